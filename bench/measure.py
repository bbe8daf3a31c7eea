"""The per-op table: in-process sway, host unary and host batched, side by side.

All three variants score the same texts on the same model in one process
run, for each of sway's three scoring ops. The design is about fairness
rather than absolute numbers (see ``bench.paired``):

* every text is scored at most once per variant and op (sway's in-process
  LRU cache must miss; the run checks that it did);
* unary calls run in blocks that alternate between in-process and host, in
  ABBA order that flips every block and round, so slow drifts in machine
  load hit both sides equally; the batched call sits between the blocks of
  its round;
* ratios are taken per round on the same texts (paired, from per-call
  medians so that one call hit by a burst cannot decide a round), and the
  report gives their median over rounds and their range.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from bench.calls import OPS, items_for, many, time_each, timed, unary
from bench.config import ModelPlan
from bench.paired import Ratio, flip
from bench.prompts import TextPool


@dataclass(frozen=True)
class OpTiming:
    """One op's figures: medians in milliseconds, ratios as medians of per-round ratios."""

    op: str
    view: str
    """``ft`` or ``base``: the host keeps a view entered between calls, as sway does."""
    inproc_ms: float
    host_unary_ms: float
    host_batched_ms: float
    unary_ratio: Ratio
    """Host unary call / in-process call (lower is better; 1.0 is parity)."""
    batch_speedup: Ratio
    """In-process call / host batched item (higher is better)."""

    def figures(self) -> list[float]:
        return [
            self.inproc_ms,
            self.host_unary_ms,
            self.host_batched_ms,
            self.unary_ratio.median,
            self.unary_ratio.lo,
            self.unary_ratio.hi,
            self.batch_speedup.median,
            self.batch_speedup.lo,
            self.batch_speedup.hi,
        ]


@dataclass
class _Samples:
    inproc_calls: list[float] = field(default_factory=list)
    host_calls: list[float] = field(default_factory=list)
    unary_ratios: list[float] = field(default_factory=list)
    batch_speedups: list[float] = field(default_factory=list)
    batched_per_item: list[float] = field(default_factory=list)


def _warm_up(inproc: Any, host: Any, pool: TextPool, plan: ModelPlan) -> None:
    """First calls pay one-off costs (allocator growth, lazy imports, gRPC channel set-up)."""
    for op in OPS:
        items = items_for(op, pool.take(plan.warmup + plan.batch))
        for item in items[: plan.warmup]:
            unary(op, inproc, item, plan.top_k)
            unary(op, host, item, plan.top_k)
        many(op, host, items[plan.warmup :], plan.top_k)


def _round(
    op: str, inproc: Any, host: Any, texts: Sequence[str], plan: ModelPlan, r: int, s: _Samples
) -> None:
    """One round of one op: unary blocks ABBA, the batch in the middle, ratios paired."""
    items = items_for(op, texts)
    inproc_times: list[float] = []
    host_times: list[float] = []
    batched = 0.0
    blocks = [items[i : i + plan.block] for i in range(0, len(items), plan.block)]
    for j, block in enumerate(blocks):
        order = [(inproc, inproc_times), (host, host_times)]
        if not flip(r, j):
            order.reverse()
        for view, sink in order:
            sink += time_each(partial(unary, op, view, top_k=plan.top_k), block)
        if j == (len(blocks) - 1) // 2:
            batched = timed(partial(many, op, host, items, plan.top_k))
    s.inproc_calls += inproc_times
    s.host_calls += host_times
    # Medians, not sums: a call caught by another tenant's burst would
    # otherwise decide the round's ratio on its own.
    inproc_typical = statistics.median(inproc_times)
    s.unary_ratios.append(statistics.median(host_times) / inproc_typical)
    s.batch_speedups.append(inproc_typical / (batched / len(items)))
    s.batched_per_item.append(batched / len(items))


def measure_ops(
    inproc: Any,
    host: Any,
    pool: TextPool,
    plan: ModelPlan,
    *,
    view: str,
    tick: Callable[[], None] | None = None,
) -> tuple[OpTiming, ...]:
    """Interleaved rounds over every op (ops rotate each round) on the entered ``view``
    of both sides; see the module docstring."""
    _warm_up(inproc, host, pool, plan)
    samples = {op: _Samples() for op in OPS}
    for r in range(plan.rounds):
        texts = pool.take(plan.batch)
        for op in OPS[r % len(OPS) :] + OPS[: r % len(OPS)]:
            _round(op, inproc, host, texts, plan, r, samples[op])
        if tick is not None:
            tick()
    return tuple(_summary(op, view, samples[op]) for op in OPS)


def _summary(op: str, view: str, s: _Samples) -> OpTiming:
    ms = 1e3
    return OpTiming(
        op=op,
        view=view,
        inproc_ms=statistics.median(s.inproc_calls) * ms,
        host_unary_ms=statistics.median(s.host_calls) * ms,
        host_batched_ms=statistics.median(s.batched_per_item) * ms,
        unary_ratio=Ratio.of(s.unary_ratios),
        batch_speedup=Ratio.of(s.batch_speedups),
    )


def worst_unary(ops: Sequence[OpTiming]) -> OpTiming:
    """The op (and view) whose host unary call costs most relative to in-process: the
    goal's figure."""
    return max(ops, key=lambda t: t.unary_ratio.median)


def all_finite_positive(values: Sequence[float]) -> bool:
    return all(math.isfinite(v) and v > 0 for v in values)
