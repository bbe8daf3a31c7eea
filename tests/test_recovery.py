"""Recovery with real worker processes: crashes, hangs, poison inputs, leaks.

Every test kills, stops or starves a real worker and checks that the
evaluation carries on with the same numbers, or fails one request alone with
an error that says what happened.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import swayhost
from swayhost import ModelSpec, PoisonInputError, RecoveryPolicy, RestartBudgetExhausted
from swayworker.codec import Generate, LogprobOf, NextTokenDist, Request, RollingLogprobOp, ViewKey

from tests.helpers import (
    FAST_RECOVERY,
    plugin_worker,
    process_alive,
    same_result,
    spawn_dummy,
    wait_until,
)
from tests.plugins.faulty_backends import POISON

REQUEST = Request(ViewKey.ft(), LogprobOf("the cat sat", " on the mat"))
MIXED = [
    Request(ViewKey.base(), LogprobOf("a b", " c")),
    Request(ViewKey.ft(), NextTokenDist("a b", 5)),
    Request(ViewKey.scaled(0.3), RollingLogprobOp("a b c d")),
    Request(ViewKey.null(4), LogprobOf("x y", " z")),
    Request(ViewKey.ft(), Generate("a", 3)),
]


@pytest.fixture
def reference() -> Iterator[list[object]]:
    """What an untroubled dummy worker answers for MIXED and REQUEST."""
    with spawn_dummy() as backend:
        yield [*backend.score_many(MIXED), backend.score(REQUEST)]


# -- crashes -----------------------------------------------------------------


def test_sigkilled_worker_is_restarted_and_the_next_call_succeeds(
    reference: list[object],
) -> None:
    with spawn_dummy(recovery=FAST_RECOVERY) as backend:
        old = backend.pid
        os.kill(old, signal.SIGKILL)
        assert same_result(backend.score(REQUEST), reference[-1])
        assert backend.pid != old and not process_alive(old)
        stats = backend.stats()
    assert (stats.crashes, stats.restarts, stats.workers_started) == (1, 1, 2)
    assert "signal SIGKILL" in stats.last_exit_cause
    assert stats.last_restart_s is not None and stats.last_restart_s > 0


def test_calls_in_flight_when_the_worker_dies_are_retried(reference: list[object]) -> None:
    with spawn_dummy(recovery=FAST_RECOVERY, sleep_ms="200") as backend:

        def kill_soon() -> None:  # the calls below take 0.2 s or more
            threading.Timer(0.1, os.kill, (backend.pid, signal.SIGKILL)).start()

        kill_soon()
        assert same_result(backend.score(REQUEST), reference[-1])
        kill_soon()
        assert all(map(same_result, backend.score_many(MIXED), reference[:-1]))
        stats = backend.stats()
    assert (stats.crashes, stats.restarts, stats.retries) == (2, 2, 2)
    assert stats.computed == 1 + len(MIXED)


def test_worker_that_exits_with_a_code_is_restarted(reference: list[object]) -> None:
    with spawn_dummy(recovery=FAST_RECOVERY) as backend:
        pid = backend.pid
        os.kill(pid, signal.SIGTERM)  # the SDK shuts down cleanly: code 0
        wait_until(lambda: not process_alive(pid))
        assert same_result(backend.score(REQUEST), reference[-1])
        assert backend.stats().last_exit_cause == "exited with code 0"


# -- poison inputs -------------------------------------------------------------


def test_a_request_that_kills_its_worker_every_time_fails_alone(
    reference: list[object],
) -> None:
    with spawn_dummy(recovery=FAST_RECOVERY, crash_on="boom") as backend:
        with backend.as_base() as view:
            with pytest.raises(PoisonInputError) as info:
                view.logprob_of("boom", " x")
            assert same_result(view.logprob_of("a b", " c"), reference[0])
        stats = backend.stats()
    message = str(info.value)
    assert "worker 'dummy'" in message and "logprob_of('boom') on view base" in message
    assert "killed its worker 2 times in a row" in message and "signal SIGKILL" in message
    assert info.value.worker == "dummy" and info.value.cause == "signal"
    assert (stats.poison_inputs, stats.crashes, stats.restarts) == (1, 2, 2)


def test_a_poison_input_in_a_batch_fails_alone(reference: list[object]) -> None:
    poisoned = [*MIXED[:2], Request(ViewKey.ft(), LogprobOf("boom", " x")), *MIXED[2:]]
    with spawn_dummy(recovery=FAST_RECOVERY, crash_on="boom") as backend:
        results = backend.score_many(poisoned, return_exceptions=True)
        stats = backend.stats()
    assert isinstance(results[2], PoisonInputError)
    assert "logprob_of('boom') on view ft" in str(results[2])
    others = results[:2] + results[3:]
    assert all(map(same_result, others, reference[:-1]))
    # twice as a whole batch, then once alone after the split
    assert (stats.crashes, stats.poison_inputs) == (3, 1)


def test_a_call_that_hangs_every_time_is_a_poison_input(reference: list[object]) -> None:
    policy = RecoveryPolicy(
        backoff_initial_s=0.01, deadline_floor_s=0.5, deadline_min_samples=3, health_interval_s=0
    )
    with spawn_dummy(recovery=policy, hang_on="stuck") as backend:
        for _ in range(3):
            backend.score(REQUEST)
        with backend.as_base() as view:
            with pytest.raises(PoisonInputError, match=r"hung: no answer within 0\.5s"):
                view.logprob_of("stuck", " x")
            assert same_result(view.logprob_of("a b", " c"), reference[0])
        stats = backend.stats()
    assert (stats.hangs, stats.poison_inputs) == (2, 1)


def test_segfaulting_backend_poison_fails_alone() -> None:
    spec = ModelSpec(
        kind="custom",
        base="toy",
        entry_point="faulty_backends:Segfaulting",
        worker=plugin_worker(recovery=FAST_RECOVERY),
    )
    pairs = [("a", " b"), (POISON, " x"), ("c", " d"), ("e", " f")]
    with swayhost.build(spec) as backend, backend.as_finetuned() as view:
        want = [view.logprob_of(*pairs[i]) for i in (0, 2, 3)]
        got = view.logprob_of_many(pairs, return_exceptions=True)
        with pytest.raises(PoisonInputError) as info:
            view.logprob_of(POISON, " y")
        assert view.logprob_of(*pairs[0]) == want[0]
        stats = backend.stats()
    assert [got[i] for i in (0, 2, 3)] == want
    assert isinstance(got[1], PoisonInputError) and "signal SIGSEGV" in str(got[1])
    assert "Current thread" in str(info.value)  # the SDK's faulthandler dump, from stderr
    assert stats.poison_inputs == 2


def test_memory_exhausted_under_an_rlimit_fails_alone() -> None:
    spec = ModelSpec(
        kind="custom",
        base="toy",
        entry_point="faulty_backends:MemoryHog",
        worker=plugin_worker(recovery=FAST_RECOVERY),
    )
    pairs = [("a", " b"), (POISON, " x"), ("c", " d")]
    with swayhost.build(spec) as backend, backend.as_finetuned() as view:
        want = [view.logprob_of(*pairs[i]) for i in (0, 2)]
        got = view.logprob_of_many(pairs, return_exceptions=True)
        with pytest.raises(MemoryError, match="Unable to allocate") as info:
            view.logprob_of(POISON, " y")
        assert view.logprob_of(*pairs[2]) == want[1]
        stats = backend.stats()
    assert [got[0], got[2]] == want
    assert isinstance(got[1], MemoryError)  # a WorkerOutOfMemory, answered by a live worker
    assert "raised in worker 'custom'" in "".join(getattr(info.value, "__notes__", []))
    assert stats.crashes == 0


def test_spent_restart_budget_names_worker_cause_and_stderr() -> None:
    policy = RecoveryPolicy(backoff_initial_s=0.01, max_restarts=1, poison_after=5)
    spec = ModelSpec(
        kind="custom",
        base="toy",
        entry_point="faulty_backends:Segfaulting",
        worker=plugin_worker(recovery=policy, name="scorer"),
    )
    with swayhost.build(spec) as backend, backend.as_base() as view:
        with pytest.raises(RestartBudgetExhausted) as info:
            view.logprob_of(POISON, " x")
        with pytest.raises(RestartBudgetExhausted):  # it stays failed: no crash loop
            view.logprob_of("a", " b")
    message = str(info.value)
    assert "worker 'scorer'" in message and "exited with signal SIGSEGV" in message
    assert "1 restarts within 600s" in message
    assert "Last stderr lines:" in message and "(most recent call first)" in message
    assert info.value.cause == "signal" and info.value.stderr_tail


# -- hangs -------------------------------------------------------------------


def test_sigstopped_worker_misses_its_deadline_and_is_replaced(
    reference: list[object],
) -> None:
    policy = RecoveryPolicy(
        backoff_initial_s=0.01, deadline_floor_s=0.5, deadline_min_samples=3, health_interval_s=0
    )
    with spawn_dummy(recovery=policy) as backend:
        for _ in range(3):
            backend.score(REQUEST)
        stopped = backend.pid
        os.kill(stopped, signal.SIGSTOP)
        wait_until(lambda: psutil.Process(stopped).status() == psutil.STATUS_STOPPED)
        started = time.monotonic()
        assert same_result(backend.score(REQUEST), reference[-1])
        elapsed = time.monotonic() - started
        stats = backend.stats()
    assert not process_alive(stopped), "the stopped worker must be killed, not left behind"
    assert (stats.hangs, stats.retries) == (1, 1) and stats.last_exit_cause.startswith("hung")
    assert elapsed < 10


def test_idle_sigstopped_worker_fails_health_checks_and_is_killed(
    reference: list[object],
) -> None:
    policy = RecoveryPolicy(
        backoff_initial_s=0.01, health_interval_s=0.2, health_timeout_s=0.2, health_failures=2
    )
    with spawn_dummy(recovery=policy) as backend:
        stopped = backend.pid
        os.kill(stopped, signal.SIGSTOP)
        wait_until(lambda: not process_alive(stopped))
        assert same_result(backend.score(REQUEST), reference[-1])
        stats = backend.stats()
    assert stats.health_check_failures >= 2 and stats.hangs == 1
    assert "failed 2 health checks in a row" in stats.last_exit_cause


def test_healthy_slow_calls_never_count_as_hangs() -> None:
    """Deadlines follow the observed latency, the call's size and the queue ahead of it."""
    policy = RecoveryPolicy(deadline_floor_s=0.3, deadline_factor=3.0, deadline_min_samples=3)
    batch = [Request(ViewKey.base(), LogprobOf(f"w{i}", " x")) for i in range(8)]
    with spawn_dummy(recovery=policy, sleep_ms="100") as backend:
        for _ in range(3):
            backend.score(REQUEST)  # ~0.1 s each: a unary deadline is now ~0.3 s
        assert len(backend.score_many(batch)) == 8  # ~0.8 s, one RPC
        threads = [threading.Thread(target=backend.score, args=(REQUEST,)) for _ in range(4)]
        for thread in threads:  # served one at a time: the last waits ~0.4 s
            thread.start()
        for thread in threads:
            thread.join()
        backend.score(Request(ViewKey.ft(), Generate("a", 5)))
        stats = backend.stats()
    assert (stats.hangs, stats.crashes, stats.restarts) == (0, 0, 0)


# -- no orphans, no leaks ------------------------------------------------------


@pytest.mark.parametrize("standby", [False, True], ids=["cold", "standby"])
def test_no_fd_or_thread_growth_across_restarts(standby: bool) -> None:
    policy = RecoveryPolicy(backoff_initial_s=0.01, max_restarts=20, standby=standby)
    others = foreign_threads()
    with spawn_dummy(recovery=policy) as backend:

        def restart() -> None:
            os.kill(backend.pid, signal.SIGKILL)
            backend.score(REQUEST)
            wait_until(lambda: backend.stats().standby_ready or not standby)

        restart()  # gRPC allocates some things once, on first use
        before = settled_fds_and_threads(others)
        for _ in range(10):
            restart()
        assert settled_fds_and_threads(others) == before
        assert backend.stats().workers_started == 12


def foreign_threads() -> set[threading.Thread]:
    """Threads that are not the host's own (other tests', gRPC's)."""
    return {t for t in threading.enumerate() if not t.name.startswith("swayhost-")}


def settled_fds_and_threads(others: set[threading.Thread]) -> tuple[int, int]:
    """Open fds and live threads, once gRPC's short-lived helper threads have ended.

    ``channel_ready_future`` polls connectivity on a thread of its own that
    ends a moment after the channel is ready; any other new thread is a leak.
    """
    wait_until(lambda: foreign_threads() <= others)
    return len(os.listdir("/proc/self/fd")), threading.active_count()


def test_close_stops_worker_and_standby_and_is_idempotent() -> None:
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    backend = spawn_dummy(recovery=RecoveryPolicy(standby=True))
    wait_until(lambda: backend.stats().standby_ready)
    # The worker, the standby and the template that forked them.
    started = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    sockets = {
        Path(c.laddr).parent
        for p in started
        for c in p.net_connections("unix")
        if c.laddr and Path(c.laddr).name == "worker.sock"
    }
    assert len(started) == 3 and len(sockets) == 2
    backend.close()
    backend.close()
    assert not any(process_alive(p.pid) for p in started)
    assert not any(folder.exists() for folder in sockets)
