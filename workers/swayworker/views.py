"""The view shape of workers that toggle one model's adapter in place (HF, MLX).

Such a backend has one set of weights, so only one view may be active at a
time (``ViewSlot``), and its four views are the same dance everywhere: claim
the slot, build the view, put the adapter in the view's state, restore it on
exit, also on exceptions (``AdapterViews``). Only the adapter states are
framework code. A view holds no state of its own: it is a name (sway's view
id, ``ViewKey.sway_id``) and the scorer to call; ``generate``, with sway's
mandated signature, and ``close`` live here once.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from swayworker.codec import ViewKey


class ViewSlot:
    """The single active-view slot of a backend whose views share its weights."""

    def __init__(self, owner: str) -> None:
        self._owner = owner
        self._active: str | None = None

    @contextmanager
    def claim(self, mode: str) -> Iterator[None]:
        """Hold the slot for the block; entering a second view meanwhile is sway's error."""
        if self._active is not None:
            raise RuntimeError(
                f"{self._owner} view {self._active!r} already active; "
                f"exit it before entering {mode!r}."
            )
        self._active = mode
        try:
            yield
        finally:
            self._active = None


def null_std(init_scale: float, rank_scale: float) -> float:
    """sway's null-adapter noise std, ``init_scale * sqrt(rank_scale)``.

    A LoRA delta is a sum of ``r`` rank-one products, so its variance scales
    with the rank, and ``rank_scale`` emulates another rank without
    reshaping anything. It must be positive and finite.
    """
    if rank_scale <= 0.0 or not math.isfinite(rank_scale):
        raise ValueError(f"rank_scale must be positive and finite; got {rank_scale!r}")
    return init_scale * math.sqrt(rank_scale)


V = TypeVar("V")


class AdapterViews(ABC, Generic[V]):
    """sway's four views, written once over a backend's three adapter states.

    A subclass sets ``self._slot = ViewSlot(...)`` and says how to build a
    view and how to turn its adapter off, scale it, or replace it with noise.
    """

    _slot: ViewSlot

    @abstractmethod
    def _make_view(self, view_id: str) -> V:
        """A view named ``view_id`` on the backend as it is now (raises once closed)."""

    @abstractmethod
    def _adapter_off(self) -> AbstractContextManager[object]:
        """The base model: every adapter layer bypassed for the block."""

    @abstractmethod
    def _adapter_scaled(self, lam: float) -> AbstractContextManager[object]:
        """Every LoRA scaling multiplied by ``lam`` for the block."""

    @abstractmethod
    def _adapter_noise(self, seed: int, std: float) -> AbstractContextManager[object]:
        """Every LoRA A/B tensor replaced by N(0, std²) noise seeded with ``seed``."""

    @contextmanager
    def _view(self, mode: str, view_id: str) -> Iterator[V]:
        with self._slot.claim(mode):
            yield self._make_view(view_id)

    @contextmanager
    def as_base(self) -> Iterator[V]:
        with self._view("base", "base") as view, self._adapter_off():
            yield view

    @contextmanager
    def as_finetuned(self) -> Iterator[V]:
        with self._view("ft", "ft") as view:
            yield view

    @contextmanager
    def as_scaled_adapter(self, lam: float) -> Iterator[V]:
        """Multiply every LoRA scaling by ``lam`` (0 = base, 1 = ft), restored on exit."""
        view_id = ViewKey.scaled(lam).sway_id()
        with self._view(f"scaled({lam})", view_id) as view, self._adapter_scaled(lam):
            yield view

    @contextmanager
    def as_null_adapter(
        self, seed: int, *, init_scale: float = 0.02, rank_scale: float = 1.0
    ) -> Iterator[V]:
        """Every LoRA A/B replaced by seeded noise of std ``null_std``, restored on exit."""
        std = null_std(init_scale, rank_scale)
        view_id = ViewKey.null(seed, init_scale, rank_scale).sway_id()
        with self._view(view_id, view_id) as view, self._adapter_noise(seed, std):
            yield view


class GeneratingScorer(Protocol):
    def generate(
        self, prompt: str, *, max_new_tokens: int, temperature: float, top_p: float, seed: int
    ) -> str: ...


S = TypeVar("S", bound=GeneratingScorer)


@dataclass(frozen=True, slots=True)
class ScorerView(Generic[S]):
    """A view ``id`` whose work is done by ``_scorer`` (the backend's, in its current state)."""

    id: str
    _scorer: S

    def generate(
        self,
        prompt: str,
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int = 0,
    ) -> str:
        return self._scorer.generate(
            prompt,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            seed=seed,
        )

    def close(self) -> None:
        """Views own nothing; the backend's ``close`` frees the model."""
