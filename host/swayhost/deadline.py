"""Per-call deadlines learned from the worker's own latency.

A stuck call means a stuck worker (a SIGSTOPped process, a deadlock in a
backend), and only a deadline notices it while the call is in flight. A
fixed deadline is wrong for every model: too short for a 70B model on CPU,
uselessly long for a tiny one. So the deadline follows what this worker has
shown: seconds per *unit* of work (a request, or a generated token), its
p99 over recent calls of the same kind (unary, batch, preflight: a batched
forward pass costs far less per item than a unary call), times a generous
factor, never below a floor. The units of calls already in flight are added
in, because the worker serves them first; a healthy but slow call therefore
gets room in proportion to its size and to the queue ahead of it.
"""

from __future__ import annotations

import math
import threading
from collections import deque

from swayhost.policy import RecoveryPolicy

WINDOW = 256
"""Recent per-unit latencies kept per kind; old samples age out as the workload changes."""
REFRESH = 16
"""New samples between two p99 computations: sorting the window on every call of a
sub-millisecond worker cost a measurable share of the call."""


class DeadlineEstimator:
    """Observes call latencies and turns them into deadlines."""

    def __init__(self, policy: RecoveryPolicy) -> None:
        self._policy = policy
        self._samples: dict[str, deque[float]] = {}
        self._p99: dict[str, float] = {}
        self._stale: dict[str, int] = {}
        self._lock = threading.Lock()

    def observe(self, kind: str, seconds: float, units: int) -> None:
        with self._lock:
            window = self._samples.setdefault(kind, deque(maxlen=WINDOW))
            window.append(seconds / max(1, units))
            self._stale[kind] = self._stale.get(kind, 0) + 1

    def deadline(self, kind: str, units: int) -> float:
        """Seconds a ``kind`` call of ``units`` (queue included) may take before it is hung."""
        p = self._policy
        with self._lock:
            window = self._samples.get(kind, ())
            if len(window) < max(1, p.deadline_min_samples):
                return max(p.deadline_floor_s, p.cold_deadline_s)
            if kind not in self._p99 or self._stale.get(kind, 0) >= REFRESH:
                samples = sorted(window)
                self._p99[kind] = samples[max(0, math.ceil(0.99 * len(samples)) - 1)]
                self._stale[kind] = 0
            p99 = self._p99[kind]
        return max(p.deadline_floor_s, p.deadline_factor * p99 * max(1, units))
