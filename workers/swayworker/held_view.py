"""Keep the last view open between requests, for backends whose views are exclusive.

Every request names its view, so a stateless servicer would enter and leave
the view around each call. For an HF backend that is expensive exactly where
sway is cheap: entering the base view walks the model to disable its adapter
layers (about 1.4 ms on the tiny model, most of a call), and entering a null
view draws fresh noise for every LoRA tensor. sway itself enters a view once
and scores many times inside it. ``HeldView`` does the same for a run of
requests on one view: the view stays entered until a request names another
one, a whole-backend operation (Preflight, Load, close) needs the backend to
itself, or a call on it fails (leaving restores the backend's state, so an
error never lingers).

It is only for backends whose calls are serialised anyway (not safe for
concurrent views): every use is on the servicer's one model thread.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from swayworker.codec import ViewKey

Enter = Callable[[Any, ViewKey], AbstractContextManager[Any]]


class HeldView:
    """The one view entered on a backend, kept open for the next request on it."""

    def __init__(self, enter: Enter) -> None:
        self._enter = enter
        self._backend: Any = None
        self._key: ViewKey | None = None
        self._view: Any = None
        self._stack: contextlib.ExitStack | None = None

    @property
    def key(self) -> ViewKey | None:
        """The view held now (None: none)."""
        return self._key

    def view(self, backend: Any, key: ViewKey) -> Any:
        """The view ``key`` of ``backend``: the one held, or entered now (leaving any other)."""
        if self._stack is not None and self._key == key and self._backend is backend:
            return self._view
        self.release()
        stack = contextlib.ExitStack()
        view = stack.enter_context(self._enter(backend, key))
        self._backend, self._key, self._view, self._stack = backend, key, view, stack
        return view

    def release(self) -> None:
        """Leave the held view, if any, restoring the backend's state."""
        stack = self._stack
        self._backend = self._key = self._view = self._stack = None
        if stack is not None:
            stack.close()
