"""Fast unit tests of the host's machinery: Supervisor, Coalescer, Gate and deadlines.

The real-worker tests (test_recovery*, test_dynamic_batching) prove the
machinery against real processes and signals; these pin its decisions down
with a fake endpoint (``tests.fake_endpoint``) and fake senders, in seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
from swayhost import (
    ModelSpec,
    PoisonInputError,
    RecoveryPolicy,
    RestartBudgetExhausted,
    WorkerCrashedError,
    WorkerOptions,
)
from swayhost.coalesce import Coalescer
from swayhost.deadline import DeadlineEstimator
from swayhost.gate import Gate
from swayhost.policy import Step, after_crash
from swayhost.supervisor import Supervisor
from swayplugin.v1 import backend_pb2 as pb
from swayworker.codec import LogprobOf, Request, ViewKey, request_to_proto

from tests.fake_endpoint import FakeLauncher, Script, answer

FAST = RecoveryPolicy(
    backoff_initial_s=0.0,
    backoff_max_s=0.0,
    backoff_jitter=0.0,
    health_interval_s=0.0,
    deadline_floor_s=0.0,
)


def _request(prompt: str) -> pb.ScoreRequest:
    return request_to_proto(Request(ViewKey.base(), LogprobOf(prompt, " x")))


@pytest.fixture
def launcher() -> FakeLauncher:
    return FakeLauncher(Script())


def _supervisor(launcher: FakeLauncher, policy: RecoveryPolicy = FAST) -> Supervisor:
    spec = ModelSpec(base="toy", kind="dummy", worker=WorkerOptions(name="fake", recovery=policy))
    supervisor = Supervisor(spec, launcher)
    supervisor.start()
    return supervisor


@pytest.fixture
def supervised(launcher: FakeLauncher) -> Iterator[Supervisor]:
    supervisor = _supervisor(launcher)
    yield supervisor
    supervisor.close()


# -- Supervisor: restart, retry, poison ----------------------------------------


def test_a_call_is_answered_by_the_worker(supervised: Supervisor, launcher: FakeLauncher) -> None:
    assert supervised.score(_request("hello")).logprob == answer("hello")
    assert len(launcher.started) == 1


def test_a_crash_restarts_the_worker_and_retries_the_call(
    supervised: Supervisor, launcher: FakeLauncher
) -> None:
    launcher.script.crash_once.add("unlucky")
    assert supervised.score(_request("unlucky")).logprob == answer("unlucky")
    assert len(launcher.started) == 2
    assert launcher.started[0].returncode == -9
    stats = supervised.snapshot()
    assert stats.workers_started == 2
    assert launcher.script.seen.count("unlucky") == 2  # sent again, unchanged


def test_a_poison_input_fails_alone_and_the_worker_keeps_serving(
    supervised: Supervisor, launcher: FakeLauncher
) -> None:
    launcher.script.crash_always.add("poison")
    with pytest.raises(PoisonInputError, match="poison input"):
        supervised.score(_request("poison"))
    assert launcher.script.seen.count("poison") == FAST.poison_after
    assert supervised.score(_request("fine")).logprob == answer("fine")


def test_a_batch_is_split_to_find_its_poison_input(
    supervised: Supervisor, launcher: FakeLauncher
) -> None:
    launcher.script.crash_always.add("poison")
    outcomes = supervised.score_batch([_request(p) for p in ("a", "poison", "bb")])
    assert [type(o) for o in outcomes] == [pb.ScoreResponse, PoisonInputError, pb.ScoreResponse]
    assert [o.logprob for o in outcomes if isinstance(o, pb.ScoreResponse)] == [-1.0, -2.0]


def test_with_recovery_off_the_first_crash_is_final(launcher: FakeLauncher) -> None:
    supervisor = _supervisor(launcher, RecoveryPolicy.never())
    try:
        launcher.script.crash_once.add("boom")
        with pytest.raises(WorkerCrashedError, match="after 0 retries"):
            supervisor.score(_request("boom"))
        with pytest.raises(RestartBudgetExhausted, match="restarts are off"):
            supervisor.score(_request("fine"))
        with pytest.raises(RestartBudgetExhausted):  # and stays final
            supervisor.score(_request("fine"))
    finally:
        supervisor.close()
    assert len(launcher.started) == 1


def test_the_retry_limit_applies_when_crashes_are_not_alone(launcher: FakeLauncher) -> None:
    supervisor = _supervisor(launcher, replace(FAST, max_call_retries=1, poison_after=5))
    try:
        launcher.script.crash_always.add("boom")
        with pytest.raises(WorkerCrashedError, match="giving up on this call after 1 retries"):
            supervisor.score(_request("boom"))
    finally:
        supervisor.close()


def test_a_hung_call_misses_its_deadline_and_is_retried(launcher: FakeLauncher) -> None:
    supervisor = _supervisor(launcher, replace(FAST, cold_deadline_s=0.3))
    try:
        launcher.script.hang_once.add("stuck")
        started = time.monotonic()
        assert supervisor.score(_request("stuck")).logprob == answer("stuck")
        assert time.monotonic() - started < 5
        assert supervisor.snapshot().hangs == 1
    finally:
        supervisor.close()


def test_a_worker_that_comes_back_as_another_backend_is_refused() -> None:
    launcher = FakeLauncher(Script(crash_once={"boom"}), identity=lambda n: f"fake:{n}")
    supervisor = _supervisor(launcher)
    try:
        with pytest.raises(WorkerCrashedError, match="came back as a different backend"):
            supervisor.score(_request("boom"))
    finally:
        supervisor.close()


def test_closing_stops_the_owned_worker(launcher: FakeLauncher) -> None:
    supervisor = _supervisor(launcher)
    supervisor.close()
    assert launcher.started[0].returncode == 0  # Shutdown RPC: a clean exit
    with pytest.raises(WorkerCrashedError, match="is closed"):
        supervisor.score(_request("late"))


def test_the_supervisor_counts_rpcs_and_results(supervised: Supervisor) -> None:
    supervised.score(_request("one"))
    supervised.score_batch([_request(p) for p in ("a", "b", "c")])
    stats = supervised.snapshot()
    assert (stats.score_rpcs, stats.batch_rpcs, stats.computed) == (1, 1, 4)


@pytest.mark.parametrize(
    ("crashes", "witnessed", "alone", "single", "step"),
    [
        (1, True, False, True, Step.RETRY),  # bad luck: others were in flight
        (1, True, True, True, Step.RETRY),  # alone once is not yet a pattern
        (2, True, False, True, Step.ISOLATE),  # twice: next time alone, to tell
        (2, True, True, True, Step.POISON),  # killed it alone, again
        (2, True, True, False, Step.SPLIT),  # a batch: find the one request
        (2, False, True, True, Step.ISOLATE),  # only reached a dead worker: not its fault
        (4, True, False, True, Step.GIVE_UP),  # more crashes than max_call_retries (3)
    ],
)
def test_the_decision_after_a_crash(
    crashes: int, witnessed: bool, alone: bool, single: bool, step: Step
) -> None:
    policy = RecoveryPolicy(poison_after=2, max_call_retries=3)
    assert after_crash(policy, crashes, witnessed=witnessed, alone=alone, single=single) is step


# -- Deadlines -------------------------------------------------------------------


def test_deadlines_are_cold_until_enough_samples() -> None:
    policy = RecoveryPolicy(deadline_min_samples=3, cold_deadline_s=100.0, deadline_floor_s=1.0)
    estimator = DeadlineEstimator(policy)
    estimator.observe("Score", 0.5, 1)
    assert estimator.deadline("Score", 1) == 100.0


def test_deadlines_scale_with_the_p99_the_factor_and_the_units() -> None:
    policy = RecoveryPolicy(deadline_min_samples=1, deadline_factor=10.0, deadline_floor_s=0.0)
    estimator = DeadlineEstimator(policy)
    for _ in range(10):
        estimator.observe("Score", 0.2, 2)  # 0.1 s per unit
    assert estimator.deadline("Score", 1) == pytest.approx(1.0)
    assert estimator.deadline("Score", 5) == pytest.approx(5.0)  # queue ahead included
    assert estimator.deadline("ScoreBatch", 1) == policy.cold_deadline_s  # kinds kept apart


def test_deadlines_never_go_below_the_floor() -> None:
    policy = RecoveryPolicy(deadline_min_samples=1, deadline_floor_s=30.0)
    estimator = DeadlineEstimator(policy)
    estimator.observe("Score", 0.001, 1)
    assert estimator.deadline("Score", 1) == 30.0


# -- Coalescer -------------------------------------------------------------------


class _Sender:
    """Fake sends that record what went unary and what went as a batch."""

    def __init__(self, delay: float = 0.0, fail: frozenset[int] = frozenset()) -> None:
        self.unary: list[int] = []
        self.batches: list[list[int]] = []
        self._delay = delay
        self._fail = fail

    def one(self, request: int) -> int:
        time.sleep(self._delay)
        self.unary.append(request)
        if request in self._fail:
            raise ValueError(f"bad {request}")
        return request * 10

    def many(self, requests: list[int]) -> list[int | BaseException]:
        time.sleep(self._delay)
        self.batches.append(list(requests))
        return [ValueError(f"bad {r}") if r in self._fail else r * 10 for r in requests]


def test_a_lone_caller_goes_unary_at_once() -> None:
    sender = _Sender()
    coalescer = Coalescer(sender.one, sender.many, max_items=8, max_cost=100, window_s=1.0)
    started = time.monotonic()
    assert [coalescer.submit(i, 1) for i in range(5)] == [0, 10, 20, 30, 40]
    assert time.monotonic() - started < 0.5  # the window is never waited alone
    assert sender.unary == [0, 1, 2, 3, 4]
    assert sender.batches == []


def test_concurrent_callers_are_batched_and_each_gets_its_own_answer() -> None:
    sender = _Sender(delay=0.05, fail=frozenset({7}))
    coalescer = Coalescer(sender.one, sender.many, max_items=4, max_cost=100, window_s=0.01)

    def call(i: int) -> int | str:
        try:
            return coalescer.submit(i, 1)
        except ValueError as exc:
            return str(exc)

    with ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(call, range(12)))
    assert results == [i * 10 if i != 7 else "bad 7" for i in range(12)]
    assert sender.batches, "no batch was formed"
    assert all(len(batch) <= 4 for batch in sender.batches)
    assert sorted(sender.unary + [r for b in sender.batches for r in b]) == list(range(12))


class _CountingCondition(threading.Condition):
    """A condition that counts the waits a notify ended (not a timeout)."""

    def __init__(self, lock: threading.Lock) -> None:
        super().__init__(lock)
        self.notified_waits = 0

    def wait(self, timeout: float | None = None) -> bool:
        woken = super().wait(timeout)
        self.notified_waits += woken
        return woken


def test_a_gathering_leader_is_woken_once_per_batch_not_per_arrival() -> None:
    """Eight callers in lockstep: each batch's leader waits for the other seven, and
    only the one that fills the batch wakes it (a wake-up per arrival cost the leader
    seven GIL round trips per batch)."""
    sender = _Sender(delay=0.001)
    coalescer = Coalescer(sender.one, sender.many, max_items=8, max_cost=100, window_s=0.5)
    counting = _CountingCondition(coalescer._lock)
    coalescer._arrived = counting
    start = threading.Barrier(8)

    def caller(c: int) -> list[int]:
        start.wait()
        return [coalescer.submit(c * 100 + i, 1) for i in range(20)]

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(caller, range(8)))
    assert answers == [[(c * 100 + i) * 10 for i in range(20)] for c in range(8)]
    full = [batch for batch in sender.batches if len(batch) == 8]
    assert len(full) >= 15, sender.batches  # steady load settles into full batches
    assert counting.notified_waits <= len(sender.batches)


def test_a_batch_stays_within_its_cost_budget() -> None:
    sender = _Sender(delay=0.05)
    coalescer = Coalescer(sender.one, sender.many, max_items=10, max_cost=3, window_s=0.01)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda i: coalescer.submit(i, 2), range(8)))
    assert all(len(batch) <= 1 for batch in sender.batches)  # two items would cost 4 > 3


def test_a_failed_batch_send_fails_every_caller_in_it() -> None:
    def broken(requests: list[int]) -> list[int | BaseException]:
        raise RuntimeError("transport")

    gate = threading.Event()

    def slow_one(request: int) -> int:
        gate.wait(1.0)
        raise RuntimeError("transport")

    coalescer = Coalescer(slow_one, broken, max_items=8, max_cost=100, window_s=0.01)
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = [pool.submit(coalescer.submit, i, 1) for i in range(4)]
        gate.set()
        errors = [f.exception(5.0) for f in futures]
    assert all(isinstance(e, RuntimeError) for e in errors)


# -- Gate --------------------------------------------------------------------------


def test_the_gate_shares_until_someone_needs_it_alone() -> None:
    gate = Gate()
    inside: list[str] = []
    with gate.hold(False), gate.hold(False):  # shared holders coexist
        inside.append("two shared")
    entered = threading.Event()
    release = threading.Event()

    def exclusive() -> None:
        with gate.hold(True):
            entered.set()
            release.wait(5.0)

    with gate.hold(False):
        thread = threading.Thread(target=exclusive)
        thread.start()
        assert not entered.wait(0.1), "an exclusive holder entered beside a shared one"
    assert entered.wait(5.0)
    shared_entered = threading.Event()

    def shared() -> None:
        with gate.hold(False):
            shared_entered.set()

    other = threading.Thread(target=shared)
    other.start()
    assert not shared_entered.wait(0.1), "a shared holder entered beside an exclusive one"
    release.set()
    assert shared_entered.wait(5.0)
    thread.join(5.0)
    other.join(5.0)
    assert inside == ["two shared"]


def test_a_waiting_exclusive_holder_goes_before_new_shared_ones() -> None:
    gate = Gate()
    order: list[str] = []
    first_shared = gate.hold(False)
    first_shared.__enter__()

    def exclusive() -> None:
        with gate.hold(True):
            order.append("exclusive")

    def shared() -> None:
        with gate.hold(False):
            order.append("shared")

    writer = threading.Thread(target=exclusive)
    writer.start()
    time.sleep(0.05)  # the writer is waiting now
    reader = threading.Thread(target=shared)
    reader.start()
    time.sleep(0.05)
    assert order == []
    first_shared.__exit__(None, None, None)
    writer.join(5.0)
    reader.join(5.0)
    assert order == ["exclusive", "shared"]
