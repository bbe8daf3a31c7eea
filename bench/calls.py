"""Scoring calls as the bench makes them, and the clocks around them.

The same helpers drive both sides: a sway view and a host view share the
``ScoringModel`` surface, and the host view adds the ``*_many`` batches.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from bench.prompts import Pair, split_pair

OPS = ("next_token_dist", "logprob_of", "rolling_logprob")
SWEEP_OP = "next_token_dist"
"""The op every sweep times: the one sway's divergence probes call most."""

Item = str | Pair


def items_for(op: str, texts: Sequence[str]) -> list[Item]:
    """The op's arguments for ``texts``: (prompt, completion) pairs for ``logprob_of``."""
    return [split_pair(t) for t in texts] if op == "logprob_of" else list(texts)


def unary(op: str, view: Any, item: Item, top_k: int) -> object:
    if isinstance(item, tuple):
        return view.logprob_of(*item)
    if op == "rolling_logprob":
        return view.rolling_logprob(item)
    return view.next_token_dist(item, top_k=top_k)


def many(op: str, view: Any, items: Sequence[Item], top_k: int) -> list[Any]:
    """One ``*_many`` call on a host view (a ScoreBatch RPC per worker batch limit)."""
    result: list[Any]
    if op == "logprob_of":
        result = view.logprob_of_many(items)
    elif op == "rolling_logprob":
        result = view.rolling_logprob_many(items)
    else:
        result = view.next_token_dist_many(items, top_k=top_k)
    if len(result) != len(items):
        raise RuntimeError(f"{op}_many returned {len(result)} results for {len(items)} items")
    return result


def time_each(call: Callable[[Item], object], items: Sequence[Item]) -> list[float]:
    """Seconds per call, one call per item."""
    times = []
    for item in items:
        start = time.perf_counter()
        call(item)
        times.append(time.perf_counter() - start)
    return times


def timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start
