"""A backend whose worker is still starting: the caller goes on meanwhile.

``sway run`` builds its backend and then does work of its own before the
first scoring call (it imports torch to seed its RNGs: about 2 s), which in
process overlaps nothing, and through the host used to wait behind the
worker's start (interpreter, framework imports, model load). Started in the
background, the two overlap: the caller gets the backend at once and the
first call that needs the worker waits for it.

Errors are not lost, only moved: whatever the start raises (a Load error,
a worker that cannot start) is raised, with its own type and words, by
every call that needs the worker, starting with the first (in ``sway run``,
sway's preflight check, which runs before any probe and fails the command
as a build error would).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future

from swayhost.proxy import RemoteBackend


class StartingBackend:
    """``start()`` running on a thread of its own; ``result()`` waits for it.

    The thread is a daemon: a caller that exits (or is interrupted) while the
    worker starts must not wait for a model load it no longer wants, and the
    worker, whose host is gone, stops itself (``swayworker.lifeline``).
    """

    def __init__(self, start: Callable[[], RemoteBackend], what: str) -> None:
        self._future: Future[RemoteBackend] = Future()
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(
            target=self._run, args=(start,), name=f"swayhost-start {what}", daemon=True
        )
        self._thread.start()

    def _run(self, start: Callable[[], RemoteBackend]) -> None:
        try:
            backend = start()
        except BaseException as exc:  # kept for the caller, who sees it at its first call
            self._future.set_exception(exc)
            return
        with self._lock:
            closed = self._closed
            if not closed:
                self._future.set_result(backend)
        if closed:  # the caller closed us while we started: nobody will use it
            backend.close()
            self._future.set_exception(RuntimeError("the backend was closed while starting"))

    def result(self) -> RemoteBackend:
        """The started backend, once it is; or the start's error, raised again."""
        return self._future.result()

    def done(self) -> bool:
        return self._future.done()

    def close(self) -> None:
        """Close the backend if it started; if it is still starting, once it has.

        Never waits for a start: closing is what a caller does on its way out.
        """
        with self._lock:
            self._closed = True
            started = self._future.done() and self._future.exception() is None
        if started:
            self._future.result().close()
