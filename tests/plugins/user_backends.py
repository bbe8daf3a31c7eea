"""User backend classes the custom worker loads by entry_point in tests.

They are what a sway user would write: constructed as
``Cls(base_spec=..., adapter_path=...)`` and satisfying sway's protocols to
different degrees.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dlm_sway.backends.dummy import DummyDifferentialBackend, DummyResponses
from swayworker.dummy import DummyBackend


def canned() -> tuple[DummyResponses, DummyResponses]:
    """The canned answers the in-process reference uses too."""
    base = DummyResponses(
        generations={"q": "base answer"},
        logprobs={("The sky is", " blue"): -1.5, ("The sky is", " green"): -6.0},
    )
    ft = DummyResponses(
        generations={"q": "fine-tuned answer"},
        logprobs={("The sky is", " blue"): -0.5, ("The sky is", " green"): -4.0},
    )
    return base, ft


class SwayDummy(DummyDifferentialBackend):
    """sway's own dummy backend, made constructible from a spec."""

    def __init__(self, *, base_spec: Any, adapter_path: Any) -> None:
        base, ft = canned()
        super().__init__(base=base, ft=ft)
        self.seen_base = base_spec.base


class ToyModel(DummyBackend):
    """A well-formed model (the dummy worker's toy) written as a user class.

    Unlike sway's canned dummy, its derived views are real distributions, so
    the custom worker serving it must pass the whole conformance kit.
    """

    def __init__(self, *, base_spec: Any, adapter_path: Any) -> None:
        super().__init__()


class _View:
    id = "view"

    def __init__(self, offset: float) -> None:
        self._offset = offset

    def logprob_of(self, prompt: str, completion: str) -> float:
        return -float(len(completion)) + self._offset

    def rolling_logprob(self, text: str) -> Any:
        raise NotImplementedError

    def next_token_dist(self, prompt: str, *, top_k: int = 256) -> Any:
        raise NotImplementedError

    def generate(
        self,
        prompt: str,
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int = 0,
    ) -> str:
        return prompt[::-1]

    def close(self) -> None:
        return None


class MinimalBackend:
    """Only as_base / as_finetuned: no scaling, no null views, no preflight."""

    def __init__(self, *, base_spec: Any, adapter_path: Any) -> None:
        self.adapter = adapter_path

    @contextmanager
    def as_base(self) -> Iterator[_View]:
        yield _View(0.0)

    @contextmanager
    def as_finetuned(self) -> Iterator[_View]:
        yield _View(1.0)


class NotABackend:
    """Constructible, but has no views."""

    def __init__(self, *, base_spec: Any, adapter_path: Any) -> None:
        pass


class WrongSignature:
    def __init__(self, model_name: str) -> None:
        pass


class ThreadRecording(MinimalBackend):
    """Records which threads run its code: constructor, views and calls.

    ``logprob_of`` answers minus the number of distinct threads seen so far,
    so a caller through a real worker can read how many threads ran model code.
    """

    def __init__(self, *, base_spec: Any, adapter_path: Any) -> None:
        super().__init__(base_spec=base_spec, adapter_path=adapter_path)
        self.threads = {threading.get_ident()}

    @contextmanager
    def as_base(self) -> Iterator[_View]:
        self.threads.add(threading.get_ident())
        yield _CountingView(self.threads)

    @contextmanager
    def as_finetuned(self) -> Iterator[_View]:
        self.threads.add(threading.get_ident())
        yield _CountingView(self.threads)


class _CountingView(_View):
    def __init__(self, threads: set[int]) -> None:
        super().__init__(0.0)
        self._threads = threads

    def logprob_of(self, prompt: str, completion: str) -> float:
        self._threads.add(threading.get_ident())
        return -float(len(self._threads))
