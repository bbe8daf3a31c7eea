"""The servicer keeps an exclusive backend's view open across requests on it (``HeldView``).

A unit test of the servicer with a backend that records every enter and exit:
the end-to-end proof that held views change no number is the sway run parity
test (tests/test_sway_run.py), which alternates base, ft, scaled and null views.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from unittest import mock

import pytest
from swayplugin.v1 import backend_pb2 as pb
from swayworker.codec import LogprobOf, Request, ViewKey, request_to_proto
from swayworker.servicer import BackendServicer


class RecordingBackend:
    """Views that log ``enter <id>`` / ``exit <id>``; ``logprob_of('boom', ...)`` raises."""

    def __init__(self, *, concurrent: bool = False) -> None:
        self.safe_for_concurrent_views = concurrent
        self.log: list[str] = []

    @contextmanager
    def _view(self, view_id: str) -> Iterator[Any]:
        self.log.append(f"enter {view_id}")
        try:
            yield _View(view_id)
        finally:
            self.log.append(f"exit {view_id}")

    def as_base(self) -> Any:
        return self._view("base")

    def as_finetuned(self) -> Any:
        return self._view("ft")

    def as_scaled_adapter(self, lam: float) -> Any:
        return self._view(f"scaled({lam})")

    def preflight_finite_check(self) -> tuple[bool, str]:
        with self.as_base(), self.as_finetuned():
            self.log.append("preflight")
        return True, ""


class _View:
    def __init__(self, view_id: str) -> None:
        self.id = view_id

    def logprob_of(self, prompt: str, completion: str) -> float:
        if prompt == "boom":
            raise RuntimeError("the op failed")
        return -1.0

    def rolling_logprob(self, text: str) -> Any:
        raise NotImplementedError

    def next_token_dist(self, prompt: str, *, top_k: int = 256) -> Any:
        raise NotImplementedError

    def generate(self, prompt: str, **kwargs: Any) -> str:
        return ""


def score(servicer: BackendServicer, view: ViewKey, prompt: str = "a") -> pb.ScoreResponse:
    request = request_to_proto(Request(view, LogprobOf(prompt, " b")))
    response: pb.ScoreResponse = servicer.Score(request, mock.Mock())
    return response


def batch(servicer: BackendServicer, views: list[ViewKey]) -> pb.ScoreBatchResponse:
    requests = [request_to_proto(Request(view, LogprobOf("a", " b"))) for view in views]
    response: pb.ScoreBatchResponse = servicer.ScoreBatch(
        pb.ScoreBatchRequest(requests=requests), mock.Mock()
    )
    return response


def serve(backend: RecordingBackend) -> BackendServicer:
    return BackendServicer(backend=backend, loader=None, worker_kind="t", on_shutdown=lambda: None)


def test_a_run_of_requests_on_one_view_enters_it_once() -> None:
    backend = RecordingBackend()
    servicer = serve(backend)
    for _ in range(3):
        assert score(servicer, ViewKey.base()).logprob == -1.0
    assert backend.log == ["enter base"]
    score(servicer, ViewKey.ft())
    score(servicer, ViewKey.scaled(0.5))
    score(servicer, ViewKey.scaled(0.5))
    assert backend.log == [
        "enter base",
        "exit base",
        "enter ft",
        "exit ft",
        "enter scaled(0.5)",
    ]


def test_a_batch_reuses_the_held_view_and_leaves_the_last_one_open() -> None:
    backend = RecordingBackend()
    servicer = serve(backend)
    score(servicer, ViewKey.ft())
    batch(servicer, [ViewKey.ft(), ViewKey.ft(), ViewKey.base()])
    assert backend.log == ["enter ft", "exit ft", "enter base"]


def test_a_batch_mixing_views_starts_with_the_held_one() -> None:
    backend = RecordingBackend()
    servicer = serve(backend)
    score(servicer, ViewKey.base())
    response = batch(servicer, [ViewKey.ft(), ViewKey.base(), ViewKey.ft()])
    assert [item.result.logprob for item in response.items] == [-1.0, -1.0, -1.0]  # in order
    assert backend.log == ["enter base", "exit base", "enter ft"]


def test_preflight_and_close_get_the_backend_to_themselves() -> None:
    backend = RecordingBackend()
    servicer = serve(backend)
    score(servicer, ViewKey.ft())
    assert servicer.Preflight(pb.PreflightRequest(), mock.Mock()).ok
    assert backend.log[:2] == ["enter ft", "exit ft"]  # left before the check enters views
    assert backend.log[-1] == "exit base"
    score(servicer, ViewKey.base())
    servicer.close()
    assert backend.log[-2:] == ["enter base", "exit base"]


def test_a_failed_call_leaves_its_view_so_its_state_is_restored() -> None:
    backend = RecordingBackend()
    servicer = serve(backend)
    score(servicer, ViewKey.ft())
    with pytest.raises(RuntimeError, match="the op failed"):
        score(servicer, ViewKey.ft(), prompt="boom")
    assert backend.log == ["enter ft", "exit ft"]
    score(servicer, ViewKey.ft())
    assert backend.log == ["enter ft", "exit ft", "enter ft"]


def test_a_backend_safe_for_concurrent_views_gets_a_fresh_view_per_call() -> None:
    backend = RecordingBackend(concurrent=True)
    servicer = serve(backend)
    score(servicer, ViewKey.base())
    score(servicer, ViewKey.base())
    assert backend.log == ["enter base", "exit base", "enter base", "exit base"]
