"""Recovery speed: SIGKILL a worker, time the next good call, cold and with a standby.

The call after a kill pays for noticing the death, the restart backoff, a
new worker (or the warm standby) and the model load; its answer must equal
the one the first worker gave, or the figure would time a wrong result.
"""

from __future__ import annotations

import os
import signal
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import swayhost
from swayhost.policy import RecoveryPolicy

from bench.models import BenchModel
from bench.sides import host_spec


@dataclass(frozen=True)
class RestartFigures:
    cold_s: tuple[float, ...]
    """SIGKILL → next good call, no standby."""
    standby_s: tuple[float, ...]
    """The same with a warm standby worker."""

    @property
    def cold_median_s(self) -> float:
        return statistics.median(self.cold_s)

    @property
    def standby_median_s(self) -> float:
        return statistics.median(self.standby_s)

    def figures(self) -> list[float]:
        return [*self.cold_s, *self.standby_s]


def _kill_and_time(backend: swayhost.RemoteBackend, reps: int, wait_ready: bool) -> list[float]:
    seconds = []
    with backend.as_finetuned() as view:
        for rep in range(reps):
            text = f"The river ran past the town, time {rep}"
            want = view.logprob_of(text, " and on")
            if wait_ready:
                _wait(lambda: backend.stats().standby_ready)
            os.kill(backend.pid, signal.SIGKILL)
            start = time.perf_counter()
            got = view.logprob_of(text, " and on")
            seconds.append(time.perf_counter() - start)
            if got != want:
                raise RuntimeError(f"the restarted worker answered {got}, not {want}")
    return seconds


def _wait(ready: Callable[[], bool], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            raise RuntimeError("the standby worker never became ready")
        time.sleep(0.05)


def measure_restarts(model: BenchModel, reps: int, threads: int) -> RestartFigures:
    """``reps`` kills per mode on ``model``; the seconds to the next good call."""
    figures = {}
    for standby in (False, True):
        spec = host_spec(model, threads)
        options = spec.worker or swayhost.WorkerOptions()
        policy = RecoveryPolicy(standby=standby, max_restarts=reps + 5)
        spec = replace(spec, worker=replace(options, recovery=policy))
        with swayhost.build(spec) as backend:
            figures[standby] = _kill_and_time(backend, reps, wait_ready=standby)
    return RestartFigures(tuple(figures[False]), tuple(figures[True]))
