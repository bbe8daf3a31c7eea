"""Recovery speed: SIGKILL a worker, time the next good call, three ways.

The call after a kill pays for noticing the death, the restart backoff, a
new worker and the model load; its answer must equal the one the first
worker gave, or the figure would time a wrong result. The new worker comes
from the default worker template (a fork of a pre-imported process), from a
fresh interpreter (``fork_template=False``), or from a warm standby. The
template's memory is measured too: its resident set, and its unique set
(what it holds that no worker shares).
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
    """SIGKILL → next good call, no standby, a worker forked from the template."""
    spawn_s: tuple[float, ...]
    """The same without the template (the default): a fresh interpreter imports it all again."""
    standby_s: tuple[float, ...]
    """The same with a warm standby worker."""
    template_rss: int
    template_uss: int
    """The template's resident and unique memory, in bytes."""

    @property
    def cold_median_s(self) -> float:
        return statistics.median(self.cold_s)

    @property
    def spawn_median_s(self) -> float:
        return statistics.median(self.spawn_s)

    @property
    def standby_median_s(self) -> float:
        return statistics.median(self.standby_s)

    def figures(self) -> list[float]:
        return [
            *self.cold_s,
            *self.spawn_s,
            *self.standby_s,
            float(self.template_rss),
            float(self.template_uss),
        ]


def _kill_and_time(backend: swayhost.RemoteBackend, reps: int, wait_ready: bool) -> list[float]:
    seconds = []
    with backend.as_finetuned() as view:
        for rep in range(reps):
            text = f"The river ran past the town, time {rep}"
            want = view.logprob_of(text, " and on")
            if wait_ready:  # a standby forked from the template is warm once it exists
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
    import psutil

    modes = {
        "cold": RecoveryPolicy(max_restarts=reps + 5),
        "spawn": RecoveryPolicy(max_restarts=reps + 5, fork_template=False),
        "standby": RecoveryPolicy(max_restarts=reps + 5, standby=True),
    }
    figures = {}
    memory = (0, 0)
    for mode, policy in modes.items():
        spec = host_spec(model, threads)
        options = spec.worker or swayhost.WorkerOptions()
        spec = replace(spec, worker=replace(options, recovery=policy))
        with swayhost.build(spec) as backend:
            if mode == "cold":
                template = psutil.Process(psutil.Process(backend.pid).ppid())
                info = template.memory_full_info()
                memory = (int(info.rss), int(info.uss))
            figures[mode] = _kill_and_time(backend, reps, wait_ready=mode == "standby")
    return RestartFigures(
        tuple(figures["cold"]), tuple(figures["spawn"]), tuple(figures["standby"]), *memory
    )
