"""Paired, interleaved measurement: the fairness rule every figure of the bench follows.

The machine is small and shared, so its speed drifts while a run goes on.
Two sides measured one after the other would each get a different machine;
instead every round measures both sides on the same texts, back to back,
in AB order on one round and BA on the next (ABBA), and a ratio is taken
within each round. The report gives the median of those per-round ratios
and their range: the median resists a round hit by another tenant's burst,
and the range shows how much the machine moved.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Ratio:
    """The median of per-round ratios, and their range."""

    median: float
    lo: float
    hi: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Ratio:
        if not values:
            raise ValueError("a ratio needs at least one round")
        return cls(statistics.median(values), min(values), max(values))

    def text(self, digits: int = 2) -> str:
        """``1.23× (1.10–1.40)``; the range is left out when there was one round."""
        m = f"{self.median:.{digits}f}×"
        if math.isclose(self.lo, self.hi):
            return m
        return f"{m} ({self.lo:.{digits}f}–{self.hi:.{digits}f})"

    def finite_positive(self) -> bool:
        return all(math.isfinite(v) and v > 0 for v in (self.median, self.lo, self.hi))


def abba(first: bool, a: Callable[[], T], b: Callable[[], T]) -> tuple[T, T]:
    """Run ``a`` then ``b`` when ``first`` is true, else ``b`` then ``a``; results as (a, b)."""
    if first:
        ra = a()
        rb = b()
    else:
        rb = b()
        ra = a()
    return ra, rb


def flip(*indices: int) -> bool:
    """True on even sums: alternate the order with every round and every point."""
    return sum(indices) % 2 == 0
