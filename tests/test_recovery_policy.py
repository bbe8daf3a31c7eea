"""The recovery policy's arithmetic: restart budget, backoff, deadlines, exit causes."""

from __future__ import annotations

import random
import signal

import pytest
from swayhost.causes import exit_cause
from swayhost.deadline import REFRESH, DeadlineEstimator
from swayhost.policy import RecoveryPolicy, RestartBudget


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_budget_allows_max_restarts_per_sliding_window() -> None:
    clock = Clock()
    budget = RestartBudget(RecoveryPolicy(max_restarts=2, restart_window_s=60), clock=clock)
    assert budget.acquire() is not None
    clock.now += 30
    assert budget.acquire() is not None
    assert budget.acquire() is None, "a third restart within 60 s is over budget"
    clock.now += 31  # the first restart leaves the window
    assert budget.acquire() is not None
    assert budget.acquire() is None


def test_no_restarts_at_all_when_max_restarts_is_zero() -> None:
    assert RestartBudget(RecoveryPolicy.never()).acquire() is None


def test_backoff_doubles_up_to_the_cap_with_jitter_and_resets_on_success() -> None:
    policy = RecoveryPolicy(
        max_restarts=100, backoff_initial_s=0.1, backoff_max_s=1.0, backoff_jitter=0.5
    )
    budget = RestartBudget(policy, rng=random.Random(3))
    delays = [budget.acquire() for _ in range(6)]
    for delay, base in zip(delays, [0.1, 0.2, 0.4, 0.8, 1.0, 1.0], strict=True):
        assert delay is not None and base * 0.5 <= delay <= base
    assert len(set(delays)) == len(delays), "jitter spreads equal bases apart"
    budget.succeeded()
    first = budget.acquire()
    assert first is not None and first <= 0.1


def test_policy_rejects_nonsense_with_the_field_name() -> None:
    with pytest.raises(ValueError, match="max_restarts must be >= 0"):
        RecoveryPolicy(max_restarts=-1)
    with pytest.raises(ValueError, match="poison_after must be >= 1"):
        RecoveryPolicy(poison_after=0)
    with pytest.raises(ValueError, match="backoff_jitter"):
        RecoveryPolicy(backoff_jitter=1.5)


def test_deadline_is_cold_then_follows_p99_per_unit_and_the_floor() -> None:
    policy = RecoveryPolicy(
        deadline_floor_s=0.5, deadline_factor=10, deadline_min_samples=3, cold_deadline_s=99
    )
    deadlines = DeadlineEstimator(policy)
    assert deadlines.deadline("ScoreRequest", 1) == 99
    for seconds in (0.01, 0.02, 0.2):
        deadlines.observe("ScoreRequest", seconds, 1)
    assert deadlines.deadline("ScoreRequest", 1) == pytest.approx(2.0)  # 10 x p99 (0.2)
    assert deadlines.deadline("ScoreRequest", 5) == pytest.approx(10.0)  # scales with units
    for _ in range(3):
        deadlines.observe("ScoreBatchRequest", 0.02, 20)  # 1 ms per item in a batch
    assert deadlines.deadline("ScoreBatchRequest", 20) == 0.5  # the floor
    assert deadlines.deadline("PreflightRequest", 2) == 99, "kinds learn separately"


def test_deadline_p99_is_refreshed_every_few_samples_not_every_call() -> None:
    policy = RecoveryPolicy(deadline_floor_s=0.0, deadline_factor=10, deadline_min_samples=3)
    deadlines = DeadlineEstimator(policy)
    for _ in range(3):
        deadlines.observe("ScoreRequest", 0.1, 1)
    assert deadlines.deadline("ScoreRequest", 1) == pytest.approx(1.0)
    for _ in range(REFRESH - 1):
        deadlines.observe("ScoreRequest", 0.3, 1)
    assert deadlines.deadline("ScoreRequest", 1) == pytest.approx(1.0)  # not yet recomputed
    deadlines.observe("ScoreRequest", 0.3, 1)
    assert deadlines.deadline("ScoreRequest", 1) == pytest.approx(3.0)  # slower worker, longer


def test_exit_causes_are_named_for_people() -> None:
    assert exit_cause(-signal.SIGSEGV, []).text == "exited with signal SIGSEGV"
    killed = exit_cause(-signal.SIGKILL, [])
    assert killed.kind == "signal" and "OOM killer" in killed.text
    assert exit_cause(3, ["ValueError: x"]).text == "exited with code 3"
    oom = exit_cause(1, ["Traceback ...", "MemoryError"])
    assert oom.kind == "oom" and oom.text == "ran out of memory and exited with code 1"
