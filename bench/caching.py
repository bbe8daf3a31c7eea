"""The host's result cache: a repeated call against a worker round trip.

A second host backend, with the cache on (its default size), scores each
fresh text twice: the first call misses and makes the round trip, the
second is answered by the cache. In-process sway does the same on the same
texts (its own LRU answers the repeat), for reference. Rounds alternate
which side goes first, and the ratio (round trip / cache hit, from per-round
medians) is paired per round like every other figure.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from bench.calls import SWEEP_OP, unary
from bench.paired import Ratio, abba, flip
from bench.prompts import TextPool

ROUND = 8
"""Texts per round: enough for a stable median, small enough for several rounds."""


@dataclass(frozen=True)
class CacheFigures:
    round_trip_ms: float
    """A host call that misses the cache: serialise, RPC, forward pass, decode."""
    hit_ms: float
    """The same call again, answered by the host's cache."""
    ratio: Ratio
    """Round trip / cache hit, per round."""
    sway_first_ms: float
    """In-process sway, first call on a text (a forward pass)."""
    sway_hit_ms: float
    """In-process sway, the repeat (its LRU answers)."""

    def figures(self) -> list[float]:
        return [
            self.round_trip_ms,
            self.hit_ms,
            self.ratio.median,
            self.ratio.lo,
            self.ratio.hi,
            self.sway_first_ms,
            self.sway_hit_ms,
        ]


def _twice(view: Any, texts: Sequence[str], top_k: int) -> tuple[list[float], list[float]]:
    """Seconds of the first and of the repeated call, text by text."""
    first: list[float] = []
    repeat: list[float] = []
    for text in texts:
        for sink in (first, repeat):
            start = time.perf_counter()
            unary(SWEEP_OP, view, text, top_k)
            sink.append(time.perf_counter() - start)
    return first, repeat


def cache_rounds(calls: int) -> int:
    return max(1, calls // ROUND)


def measure_cache(
    inproc: Any,
    cached_host: Any,
    pool: TextPool,
    calls: int,
    top_k: int,
    tick: Callable[[], None],
) -> CacheFigures:
    """``calls`` fresh texts, each scored twice on both sides."""
    _twice(cached_host, pool.take(2), top_k)  # warm-up: channel, allocator, decode path
    rounds = cache_rounds(calls)
    host_first: list[float] = []
    host_hit: list[float] = []
    sway_first: list[float] = []
    sway_hit: list[float] = []
    ratios: list[float] = []
    for r in range(rounds):
        texts = pool.take(min(ROUND, calls))
        (sf, sh), (hf, hh) = abba(
            flip(r),
            partial(_twice, inproc, texts, top_k),
            partial(_twice, cached_host, texts, top_k),
        )
        ratios.append(statistics.median(hf) / statistics.median(hh))
        host_first += hf
        host_hit += hh
        sway_first += sf
        sway_hit += sh
        tick()
    ms = 1e3
    return CacheFigures(
        round_trip_ms=statistics.median(host_first) * ms,
        hit_ms=statistics.median(host_hit) * ms,
        ratio=Ratio.of(ratios),
        sway_first_ms=statistics.median(sway_first) * ms,
        sway_hit_ms=statistics.median(sway_hit) * ms,
    )
