"""How hard the host tries to keep a worker alive: the recovery policy and its budget.

A long evaluation should survive a worker that crashes now and then, but a
worker that crashes in a loop must stop the run with one clear error rather
than burn CPU forever; a call that kills its worker every time (a poison
input) must fail alone. ``RecoveryPolicy`` holds every knob, with defaults
meant for multi-hour runs; ``RestartBudget`` enforces the restart limit and
paces restarts with exponential backoff and jitter, so a crash loop neither
spins nor restarts in lock-step with anything else.
"""

from __future__ import annotations

import enum
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, fields


@dataclass(frozen=True, slots=True)
class RecoveryPolicy:
    """Restart, retry and hang-detection settings for one worker.

    Restarts: at most ``max_restarts`` within any ``restart_window_s``
    seconds (0 disables recovery: the first crash raises). The n-th restart
    in a row without a successful call in between waits
    ``backoff_initial_s * backoff_multiplier**(n-1)`` seconds, capped at
    ``backoff_max_s`` and shortened by a random fraction up to
    ``backoff_jitter``.

    Retries: a call is retried at most ``max_call_retries`` times after its
    worker died under it. A call in flight at ``poison_after`` consecutive
    crashes, the last one with nothing else in flight, is failed alone as a
    poison input (``PoisonInputError``); the worker keeps serving the rest.

    Hangs: a call's deadline is ``max(deadline_floor_s, deadline_factor x
    p99 of the observed seconds per unit x units)`` (a unit is one forward
    pass: one request, or one generated token), or ``cold_deadline_s`` until
    ``deadline_min_samples`` calls have been timed. A worker that misses a
    deadline, or fails ``health_failures`` health checks in a row (one every
    ``health_interval_s``, each allowed ``health_timeout_s``; interval 0
    turns them off), is hung: it is killed with SIGKILL and restarted.

    ``standby`` keeps one spare worker started and warmed up (its framework
    imported, no model loaded), so a restart costs a model load instead of a
    process start and framework import; it costs one idle process. With the
    template (below) the spare is forked from it, so it is warm the moment
    it exists; spawned, it imports for seconds after its handshake.

    ``fork_template`` (on by default) keeps one *template* for a
    built-in Python worker that recovery may restart: a process that has
    imported the worker's framework once and forks each worker, so a restart
    costs a fork and a model load (a fraction of a second on a small model)
    instead of a new interpreter and seconds of imports. It holds no model;
    its pages are shared with the workers it forks (the standby too). It
    applies to local workers only.
    Set it False to spawn every worker as a fresh interpreter.
    """

    max_restarts: int = 10
    restart_window_s: float = 600.0
    backoff_initial_s: float = 0.1
    backoff_max_s: float = 10.0
    backoff_multiplier: float = 2.0
    backoff_jitter: float = 0.5
    max_call_retries: int = 3
    poison_after: int = 2
    deadline_floor_s: float = 30.0
    deadline_factor: float = 10.0
    deadline_min_samples: int = 8
    cold_deadline_s: float = 600.0
    health_interval_s: float = 5.0
    health_timeout_s: float = 5.0
    health_failures: int = 3
    standby: bool = False
    fork_template: bool = True

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, bool) and value < 0:
                raise ValueError(f"RecoveryPolicy.{f.name} must be >= 0, got {value!r}")
        if self.poison_after < 1:
            raise ValueError("RecoveryPolicy.poison_after must be >= 1")
        if self.health_failures < 1:
            raise ValueError("RecoveryPolicy.health_failures must be >= 1")
        if not 0.0 <= self.backoff_jitter <= 1.0:
            raise ValueError("RecoveryPolicy.backoff_jitter must be within [0, 1]")
        if self.backoff_multiplier < 1.0:
            raise ValueError("RecoveryPolicy.backoff_multiplier must be >= 1")

    @classmethod
    def never(cls) -> RecoveryPolicy:
        """No restarts and no retries: a crash reaches the caller at once."""
        return cls(max_restarts=0, max_call_retries=0)


class RestartBudget:
    """Counts restarts in a sliding window and says how long to wait before each."""

    def __init__(
        self,
        policy: RecoveryPolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._policy = policy
        self._clock = clock
        self._rng = rng or random.Random()
        self._times: deque[float] = deque()
        self._in_a_row = 0
        self._lock = threading.Lock()

    def acquire(self) -> float | None:
        """Take one restart: the backoff delay to wait first, or None when spent."""
        with self._lock:
            now = self._clock()
            while self._times and now - self._times[0] > self._policy.restart_window_s:
                self._times.popleft()
            if len(self._times) >= self._policy.max_restarts:
                return None
            self._times.append(now)
            self._in_a_row += 1
            return self._delay(self._in_a_row)

    def succeeded(self) -> None:
        """A call went through: the next restart starts the backoff over."""
        self._in_a_row = 0

    def _delay(self, n: int) -> float:
        p = self._policy
        base = min(p.backoff_max_s, p.backoff_initial_s * p.backoff_multiplier ** (n - 1))
        return base * (1.0 - p.backoff_jitter * self._rng.random())


class Step(enum.Enum):
    """What the supervisor does with a call whose worker died under it."""

    RETRY = "retry"
    """Send it again, beside other calls."""
    ISOLATE = "isolate"
    """Send it again alone, to tell a poison input from bad luck."""
    SPLIT = "split"
    """A batch that killed its worker alone: run its requests one by one."""
    POISON = "poison"
    """A single request that killed its worker alone, again: fail it alone."""
    GIVE_UP = "give_up"
    """Retried as often as the policy allows: fail the call."""


def after_crash(
    policy: RecoveryPolicy, crashes: int, *, witnessed: bool, alone: bool, single: bool
) -> Step:
    """The poison rule, then the retry limit: a pure decision the supervisor carries out.

    ``crashes`` counts the deaths this call witnessed in a row (this one
    included); ``witnessed`` says whether it was in flight when this worker
    died (not merely sent to a dead one), ``alone`` whether nothing else was,
    and ``single`` whether it is one request rather than a batch.
    """
    if witnessed and alone and crashes >= policy.poison_after:
        return Step.POISON if single else Step.SPLIT
    if crashes > policy.max_call_retries:
        return Step.GIVE_UP
    return Step.ISOLATE if crashes >= policy.poison_after else Step.RETRY
