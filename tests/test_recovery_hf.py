"""Recovery on the real HF worker and the tiny model: chaos, and how fast it comes back."""

from __future__ import annotations

import os
import random
import signal
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import swayhost
from swayhost import RecoveryPolicy, WorkerOptions
from swayworker.codec import LogprobOf, Request, ViewKey
from swayworker.hf.tiny import TinyModel

from tests.helpers import same_result, wait_until, workload

pytestmark = pytest.mark.slow

CALLS = 1000
EVENTS = 11
"""Ten SIGKILLs and one SIGSTOP."""
BLOCK, UNARY, BATCH = 50, 10, 20
"""Each block of 50 calls: 10 unary calls, then two batches of 20."""

CHAOS_POLICY = RecoveryPolicy(
    max_restarts=50,
    backoff_initial_s=0.05,
    max_call_retries=6,
    poison_after=3,
    deadline_floor_s=2.0,
    health_interval_s=0.5,
    health_timeout_s=1.0,
    standby=True,
)
"""Generous retries and a standby so eleven restarts fit in a test; floor 2 s for the SIGSTOP."""


def hf_backend(tiny: TinyModel, policy: RecoveryPolicy) -> swayhost.RemoteBackend:
    spec = swayhost.ModelSpec(
        kind="hf",
        base=str(tiny.base_dir),
        adapter=tiny.adapter_dir,
        dtype="fp32",
        device="cpu",
        worker=WorkerOptions(recovery=policy, cache_bytes=0),  # every call reaches the worker
    )
    return swayhost.build(spec)


def run(backend: swayhost.RemoteBackend, requests: list[Request], done: list[int]) -> list[Any]:
    """Score ``requests`` as unary calls and batches in turn, counting progress in ``done``."""
    results: list[Any] = []
    for start in range(0, len(requests), BLOCK):
        block = requests[start : start + BLOCK]
        for request in block[:UNARY]:
            results.append(backend.score(request))
            done[0] += 1
        for first in range(UNARY, len(block), BATCH):
            results.extend(backend.score_many(block[first : first + BATCH]))
            done[0] += len(block[first : first + BATCH])
    return results


def chaos(
    backend: swayhost.RemoteBackend, done: list[int], stop: threading.Event, log: list[str]
) -> None:
    """At EVENTS random points of the run, SIGKILL the worker (once: SIGSTOP it)."""
    rng = random.Random(20240611)
    marks = sorted(rng.sample(range(30, CALLS - 60), EVENTS))
    stopped = rng.randrange(EVENTS)
    for n, mark in enumerate(marks):
        while done[0] < mark and not stop.is_set():
            time.sleep(0.002)
        if stop.is_set():
            return
        time.sleep(rng.uniform(0.0, 0.05))  # mid-call or between calls
        started, progress, pid = backend.stats().workers_started, done[0], backend.pid
        sig = signal.SIGSTOP if n == stopped else signal.SIGKILL
        os.kill(pid, sig)
        log.append(f"{sig.name} pid {pid} after {progress} calls")
        # the next event waits for the replacement to have answered something
        while not stop.is_set() and (
            backend.stats().workers_started == started or done[0] <= progress
        ):
            time.sleep(0.01)


def test_chaos_every_result_bit_identical_to_an_uninterrupted_run(
    tiny_model: TinyModel, capsys: pytest.CaptureFixture[str]
) -> None:
    requests = workload(CALLS, seed=11)
    done, stop, events = [0], threading.Event(), []
    with hf_backend(tiny_model, CHAOS_POLICY) as backend:
        started = time.monotonic()
        want = run(backend, requests, [0])  # the uninterrupted run, on the same first worker
        calm_s = time.monotonic() - started
        monkey = threading.Thread(target=chaos, args=(backend, done, stop, events))
        monkey.start()
        started = time.monotonic()
        try:
            got = run(backend, requests, done)
        finally:
            stop.set()
            monkey.join()
        chaos_s = time.monotonic() - started
        stats = backend.stats()

    with capsys.disabled():
        print(
            f"\nchaos: {CALLS} calls, {len(events)} events ({'; '.join(events)})\n"
            f"  uninterrupted {calm_s:.1f}s, with chaos {chaos_s:.1f}s "
            f"(+{chaos_s - calm_s:.1f}s, {(chaos_s - calm_s) / EVENTS:.2f}s per event)\n"
            f"  {stats.summary()}"
        )
    assert len(events) == EVENTS
    assert len(got) == len(want) == CALLS
    mismatches = [
        i for i, (g, w) in enumerate(zip(got, want, strict=True)) if not same_result(g, w)
    ]
    assert not mismatches, f"{len(mismatches)} results differ, first at call {mismatches[0]}"
    assert stats.computed == 2 * CALLS, "each call answered once per run: none lost or repeated"
    assert stats.crashes >= EVENTS and stats.workers_started >= EVENTS + 1
    assert stats.hangs >= 1 and stats.poison_inputs == 0


def test_recovery_time_from_sigkill_to_the_next_successful_call(
    tiny_model: TinyModel, capsys: pytest.CaptureFixture[str]
) -> None:
    request = Request(ViewKey.ft(), LogprobOf("The river ran", " past the mill"))

    def recovery(backend: swayhost.RemoteBackend, ready: Callable[[], bool]) -> float:
        wait_until(ready, timeout=120)
        want = backend.score(request)
        os.kill(backend.pid, signal.SIGKILL)
        started = time.monotonic()
        assert backend.score(request) == want
        return time.monotonic() - started

    with hf_backend(tiny_model, RecoveryPolicy(standby=True)) as backend:
        warm = [recovery(backend, lambda: backend.stats().standby_ready) for _ in range(3)]
    with hf_backend(tiny_model, RecoveryPolicy()) as backend:
        cold = [recovery(backend, lambda: True)]
    with capsys.disabled():
        print(
            "\nrecovery, SIGKILL to the next successful call (model load included):\n"
            f"  with a standby worker: {', '.join(f'{s:.2f}s' for s in warm)} "
            f"(median {statistics.median(warm):.2f}s)\n"
            f"  cold restart:          {', '.join(f'{s:.2f}s' for s in cold)}"
        )
    assert max(warm) < 30 and max(cold) < 120  # sanity only; the numbers are the report
