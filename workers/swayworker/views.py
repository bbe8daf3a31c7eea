"""The view shape of workers whose views are thin handles on one shared scorer.

The HF and MLX backends switch adapter state in place, so a view holds no
state of its own: it is a name (sway's view id) and the scorer to call. The
scoring methods differ per framework; ``generate``, with sway's mandated
signature, and ``close`` do not, so they live here once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar


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
