"""Sweeps: how the host compares with in-process sway as one parameter grows.

Every point of every sweep is measured in rounds, both sides on the same
fresh texts, in ABBA order (``bench.paired``); every sweep times
``next_token_dist`` (``calls.SWEEP_OP``):

* batch size: one host ``next_token_dist_many`` call of B items against
  sequential in-process calls: per-item time and throughput;
* concurrent callers: N threads, each in its own host view, making unary
  calls that dynamic batching coalesces, against the same calls made
  sequentially in process (in-process sway is not safe for concurrent
  views, so sequential is what a caller gets from it);
* prompt length and top_k: a unary host call against an in-process call.

In the batch and caller sweeps the in-process side is a reference: a
sample of up to ``reference_cap`` sequential calls per round, timed by
their median, so that every batch size does not repeat the same
sequential measurement at full length. The median of sequential calls is
at most their mean on a right-skewed machine, so it flatters the
in-process side, never the host.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

import swayhost

from bench.calls import SWEEP_OP, many, time_each, timed, unary
from bench.config import ModelPlan
from bench.models import BenchModel
from bench.paired import Ratio, abba, flip
from bench.prompts import TextPool

Tick = Callable[[], None]


@dataclass(frozen=True)
class SweepKind:
    """What a sweep varies and what its ratio means."""

    key: str
    title: str
    x_label: str
    ratio_label: str
    throughput: bool
    """True: the ratio is host throughput / in-process throughput (higher is better).
    False: host time per call / in-process time per call (lower is better)."""


BATCH = SweepKind(
    "batch",
    "Batch size: host `next_token_dist_many` vs sequential in-process calls",
    "batch size",
    "host / in-process throughput",
    True,
)
CALLERS = SweepKind(
    "callers",
    "Concurrent callers: host unary calls from N threads (dynamic batching) vs sequential"
    " in-process calls",
    "concurrent callers",
    "host / in-process throughput",
    True,
)
PROMPT = SweepKind(
    "prompt_tokens",
    "Prompt length: host unary vs in-process call",
    "prompt tokens",
    "host / in-process time per call",
    False,
)
TOP_K = SweepKind(
    "top_k",
    "top_k of `next_token_dist`: host unary vs in-process call",
    "top_k",
    "host / in-process time per call",
    False,
)
KINDS = (BATCH, CALLERS, PROMPT, TOP_K)


@dataclass(frozen=True)
class Point:
    """One sweep point: typical per-item times (ms) and the paired ratio over rounds."""

    x: int
    inproc_ms: float
    host_ms: float
    ratio: Ratio
    items_per_rpc: float = 0.0
    """Caller sweep only: requests the worker answered per RPC (coalescing at work)."""

    @property
    def inproc_per_s(self) -> float:
        return 1e3 / self.inproc_ms

    @property
    def host_per_s(self) -> float:
        return 1e3 / self.host_ms

    def figures(self) -> list[float]:
        return [self.inproc_ms, self.host_ms, self.ratio.median, self.ratio.lo, self.ratio.hi]


@dataclass(frozen=True)
class Sweep:
    kind: SweepKind
    model: str
    points: tuple[Point, ...]

    def at(self, x: int) -> Point | None:
        return next((p for p in self.points if p.x == x), None)


def _point(x: int, inproc: list[float], host: list[float], throughput: bool) -> Point:
    """Per-round seconds per item on each side → a point (ratios paired by round)."""
    pairs = zip(inproc, host, strict=True)
    ratios = [i / h if throughput else h / i for i, h in pairs]
    return Point(
        x, statistics.median(inproc) * 1e3, statistics.median(host) * 1e3, Ratio.of(ratios)
    )


def _median_call(view: Any, texts: Sequence[str], top_k: int) -> float:
    """Typical seconds per sequential unary call on ``view`` (median)."""
    return statistics.median(time_each(partial(unary, SWEEP_OP, view, top_k=top_k), texts))


def _batched_per_item(view: Any, texts: Sequence[str], top_k: int) -> float:
    """Seconds per item of one ``next_token_dist_many`` call over ``texts``."""
    return timed(partial(many, SWEEP_OP, view, texts, top_k)) / len(texts)


# -- batch size ----------------------------------------------------------------------


def batch_sweep(
    inproc: Any, host: Any, pool: TextPool, plan: ModelPlan, model: str, tick: Tick
) -> Sweep:
    points = []
    for i, size in enumerate(plan.batch_sizes):
        inproc_s: list[float] = []
        host_s: list[float] = []
        for r in range(plan.sweep_rounds):
            texts = pool.take(size)
            reference = texts[: plan.reference_cap]
            a, b = abba(
                flip(r, i),
                partial(_median_call, inproc, reference, plan.top_k),
                partial(_batched_per_item, host, texts, plan.top_k),
            )
            inproc_s.append(a)
            host_s.append(b)
            tick()
        points.append(_point(size, inproc_s, host_s, throughput=True))
    return Sweep(BATCH, model, tuple(points))


# -- concurrent callers ----------------------------------------------------------------


def _concurrent(
    backend: swayhost.RemoteBackend,
    texts: Sequence[str],
    callers: int,
    top_k: int,
    executor: ThreadPoolExecutor,
) -> float:
    """Seconds for ``callers`` threads to score ``texts`` (every callers-th one each).

    Each thread enters its own view (views are exclusive per thread, not
    across threads) before the clock starts; the clock starts once all are
    ready and stops when the last one is done.
    """
    ready = threading.Semaphore(0)
    go = threading.Event()

    def caller(share: Sequence[str]) -> None:
        with backend.as_finetuned() as view:
            ready.release()
            if not go.wait(120):
                raise TimeoutError("the bench never started this caller")
            for text in share:
                view.next_token_dist(text, top_k=top_k)

    futures: list[Future[None]] = [
        executor.submit(caller, texts[c::callers]) for c in range(callers)
    ]
    for _ in range(callers):
        if not ready.acquire(timeout=120):
            go.set()
            raise TimeoutError("a caller thread never entered its view")
    start = time.perf_counter()
    go.set()
    for future in futures:
        future.result()
    return time.perf_counter() - start


def callers_sweep(
    inproc: Any,
    host: swayhost.RemoteBackend,
    pool: TextPool,
    plan: ModelPlan,
    model: str,
    tick: Tick,
) -> Sweep:
    points = []
    for i, callers in enumerate(plan.callers):
        inproc_s: list[float] = []
        host_s: list[float] = []
        computed = rpcs = 0
        with ThreadPoolExecutor(callers, thread_name_prefix="bench-caller") as executor:
            for r in range(plan.sweep_rounds):
                texts = pool.take(callers * plan.per_caller)
                reference = texts[: plan.reference_cap]
                before = host.stats()
                with inproc.as_finetuned() as view:
                    a, wall = abba(
                        flip(r, i),
                        partial(_median_call, view, reference, plan.top_k),
                        partial(_concurrent, host, texts, callers, plan.top_k, executor),
                    )
                after = host.stats()
                computed += after.computed - before.computed
                rpcs += (after.score_rpcs + after.batch_rpcs) - (
                    before.score_rpcs + before.batch_rpcs
                )
                inproc_s.append(a)
                host_s.append(wall / len(texts))
                tick()
        point = _point(callers, inproc_s, host_s, throughput=True)
        points.append(
            Point(point.x, point.inproc_ms, point.host_ms, point.ratio, computed / max(1, rpcs))
        )
    return Sweep(CALLERS, model, tuple(points))


# -- prompt length and top_k: unary ratios ----------------------------------------------


def _unary_point(
    x: int,
    index: int,
    inproc: Any,
    host: Any,
    take: Callable[[], list[str]],
    top_k: int,
    rounds: int,
    tick: Tick,
) -> Point:
    inproc_s: list[float] = []
    host_s: list[float] = []
    for r in range(rounds):
        texts = take()
        a, b = abba(
            flip(r, index),
            partial(_median_call, inproc, texts, top_k),
            partial(_median_call, host, texts, top_k),
        )
        inproc_s.append(a)
        host_s.append(b)
        tick()
    return _point(x, inproc_s, host_s, throughput=False)


def prompt_lengths(plan: ModelPlan, model: BenchModel) -> list[int]:
    """The plan's lengths clipped to the model's context, without repeats."""
    return sorted({min(n, model.max_tokens) for n in plan.prompt_tokens})


def top_ks(plan: ModelPlan, model: BenchModel) -> list[int]:
    """The plan's top_k values, 0 meaning the full vocabulary, clipped to it."""
    return sorted({model.vocab_size if k <= 0 else min(k, model.vocab_size) for k in plan.top_ks})


def prompt_sweep(
    inproc: Any, host: Any, pool: TextPool, plan: ModelPlan, model: BenchModel, tick: Tick
) -> Sweep:
    points = [
        _unary_point(
            n,
            i,
            inproc,
            host,
            partial(pool.take, plan.sweep_block, n, n),
            plan.top_k,
            plan.sweep_rounds,
            tick,
        )
        for i, n in enumerate(prompt_lengths(plan, model))
    ]
    return Sweep(PROMPT, model.name, tuple(points))


def top_k_sweep(
    inproc: Any, host: Any, pool: TextPool, plan: ModelPlan, model: BenchModel, tick: Tick
) -> Sweep:
    points = [
        _unary_point(
            k,
            i,
            inproc,
            host,
            partial(pool.take, plan.sweep_block),
            k,
            plan.sweep_rounds,
            tick,
        )
        for i, k in enumerate(top_ks(plan, model))
    ]
    return Sweep(TOP_K, model.name, tuple(points))
