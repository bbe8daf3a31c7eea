"""All framework work of a serialised backend runs on one thread (``ModelThread``).

torch gives every thread that computes its own pool of intra-op threads; a
worker that ran forward passes on whichever gRPC handler thread took the call
held several pools fighting for the cores (docs/performance.md). These tests
pin the rule down: one thread for Load, views, calls, Preflight and close,
whatever thread the call came in on; backends safe for concurrent views keep
running on the calling threads.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from unittest import mock

import pytest
import swayhost
from swayplugin.v1 import backend_pb2 as pb
from swayworker.codec import LogprobOf, Request, ViewKey, request_to_proto
from swayworker.model_thread import ModelThread
from swayworker.servicer import BackendServicer

from tests.helpers import plugin_worker
from tests.test_held_view import RecordingBackend


def test_model_thread_runs_jobs_on_one_thread_and_hands_back_results_and_errors() -> None:
    model = ModelThread()
    callers = ThreadPoolExecutor(max_workers=4)
    idents = set(callers.map(lambda _: model.call(threading.get_ident), range(32)))
    assert len(idents) == 1
    assert idents != {threading.get_ident()}
    with pytest.raises(ZeroDivisionError):
        model.call(lambda: 1 // 0)
    # A job that calls back in runs inline instead of waiting for itself.
    assert model.call(lambda: model.call(lambda: 7)) == 7
    model.stop()
    callers.shutdown()


class _ThreadLog(RecordingBackend):
    def __init__(self, *, concurrent: bool = False) -> None:
        super().__init__(concurrent=concurrent)
        self.threads: set[int] = set()

    def _view(self, view_id: str):  # type: ignore[no-untyped-def]
        self.threads.add(threading.get_ident())
        return super()._view(view_id)

    def preflight_finite_check(self) -> tuple[bool, str]:
        self.threads.add(threading.get_ident())
        return super().preflight_finite_check()

    def close(self) -> None:
        self.threads.add(threading.get_ident())


def _score_from_many_threads(servicer: BackendServicer, calls: int = 40) -> set[int]:
    """Score and ScoreBatch on alternating views from 8 threads; the callers' thread ids."""
    callers: set[int] = set()

    def one(i: int) -> None:
        callers.add(threading.get_ident())
        view = ViewKey.ft() if i % 2 else ViewKey.base()
        request = request_to_proto(Request(view, LogprobOf("a", " b")))
        if i % 3:
            assert servicer.Score(request, mock.Mock()).logprob == -1.0
        else:
            batch = pb.ScoreBatchRequest(requests=[request, request])
            items = servicer.ScoreBatch(batch, mock.Mock()).items
            assert [item.result.logprob for item in items] == [-1.0, -1.0]

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, range(calls)))
    return callers


def test_a_serialised_backend_runs_every_call_on_one_thread() -> None:
    backend = _ThreadLog()
    servicer = BackendServicer(
        backend=backend, loader=None, worker_kind="t", on_shutdown=lambda: None
    )
    callers = _score_from_many_threads(servicer)
    assert servicer.Preflight(pb.PreflightRequest(), mock.Mock()).ok
    servicer.close()
    assert len(backend.threads) == 1
    assert not backend.threads & callers


def test_load_runs_on_the_thread_that_serves_the_calls() -> None:
    built: list[_ThreadLog] = []
    load_threads: list[int] = []

    def loader(spec: pb.ModelSpec) -> _ThreadLog:
        load_threads.append(threading.get_ident())
        built.append(_ThreadLog())
        return built[-1]

    servicer = BackendServicer(
        backend=None, loader=loader, worker_kind="t", on_shutdown=lambda: None
    )
    servicer.load(pb.ModelSpec(kind="t"))
    _score_from_many_threads(servicer, calls=12)
    servicer.close()
    assert built[0].threads == set(load_threads)


def test_a_backend_safe_for_concurrent_views_runs_on_the_calling_threads() -> None:
    backend = _ThreadLog(concurrent=True)
    servicer = BackendServicer(
        backend=backend, loader=None, worker_kind="t", on_shutdown=lambda: None
    )
    callers = _score_from_many_threads(servicer)
    assert backend.threads <= callers
    assert len(backend.threads) > 1


def test_a_real_worker_runs_the_model_on_one_thread_under_concurrent_callers() -> None:
    """Through the host and a real worker process: 8 callers, unary and batched calls."""
    spec = swayhost.ModelSpec(
        kind="custom",
        base="toy",
        entry_point="user_backends:ThreadRecording",
        worker=plugin_worker(),
    )
    with swayhost.build(spec) as backend:

        def call(i: int) -> float:
            with backend.as_finetuned() if i % 2 else backend.as_base() as view:
                return float(view.logprob_of(f"prompt {i}", " x"))

        with ThreadPoolExecutor(max_workers=8) as pool:
            answers = list(pool.map(call, range(64)))
        with backend.as_base() as view:
            many = view.logprob_of_many([(f"p {i}", " x") for i in range(16)])
    # Each answer is minus the number of threads that had run the backend's code.
    assert set(answers) == {-1.0}
    assert set(many) == {-1.0}


def test_a_submitted_job_runs_in_turn_on_the_model_thread_without_a_waiting_caller(
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = ModelThread()
    gate = threading.Event()
    ran: list[tuple[str, int]] = []
    model.submit(lambda: gate.wait(10))
    model.submit(lambda: ran.append(("first", threading.get_ident())))
    model.submit(lambda: 1 // 0)  # logged: nobody waits for it
    model.submit(lambda: ran.append(("second", threading.get_ident())))
    assert ran == []  # submit returned while the thread was still held by the first job
    gate.set()
    assert model.call(threading.get_ident) == ran[0][1] == ran[1][1]
    assert [name for name, _ in ran] == ["first", "second"]
    assert "a job submitted to the model thread failed" in caplog.text
    model.stop()


@pytest.mark.parametrize("concurrent", [False, True])
def test_a_framed_call_is_queued_whole_on_the_model_thread_for_a_serialised_backend(
    concurrent: bool,
) -> None:
    """``run_framed``: one hand-off for a serialised backend, none for a concurrent one."""
    servicer = BackendServicer(
        backend=_ThreadLog(concurrent=concurrent),
        loader=None,
        worker_kind="t",
        on_shutdown=lambda: None,
    )
    model_thread = servicer._model.call(threading.get_ident)
    gate = threading.Event()
    if concurrent:
        gate.set()
    ran_on: list[int] = []
    servicer.run_framed(lambda: (gate.wait(10), ran_on.append(threading.get_ident())))
    if concurrent:
        assert ran_on == [threading.get_ident()]
    else:
        assert ran_on == []  # queued: the connection's thread goes back to reading
        gate.set()
        servicer._model.call(lambda: None)
        assert ran_on == [model_thread]
    servicer.close()
