"""Result types a worker's backend returns: sway's own when installed.

A backend written for sway returns ``dlm_sway.core.scoring.RollingLogprob``
and ``TokenDist``. Workers must also run in environments without dlm-sway
(an isolated MLX env, say), so equivalent frozen dataclasses stand in when
it is missing. The SDK only reads attributes, so either works on the wire.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray


class RollingLogprobResult(Protocol):
    """What every ``RollingLogprob`` offers, sway's or the fallback: the static type of results."""

    @property
    def token_ids(self) -> NDArray[np.int64]: ...

    @property
    def logprobs(self) -> NDArray[np.float32]: ...

    @property
    def num_tokens(self) -> int: ...

    @property
    def total_logprob(self) -> float: ...


class TokenDistResult(Protocol):
    """What every ``TokenDist`` offers, sway's or the fallback (three-state ``tail_logprob``)."""

    @property
    def token_ids(self) -> NDArray[np.int64]: ...

    @property
    def logprobs(self) -> NDArray[np.float32]: ...

    @property
    def vocab_size(self) -> int: ...

    @property
    def tail_logprob(self) -> float | None: ...


Score = float | str | RollingLogprobResult | TokenDistResult
"""Any one operation's result: logprob_of, generate, rolling_logprob, next_token_dist."""


@dataclass(frozen=True, slots=True)
class FallbackRollingLogprob:
    """Same fields and meaning as sway's ``RollingLogprob``."""

    token_ids: NDArray[np.int64]
    logprobs: NDArray[np.float32]
    num_tokens: int
    total_logprob: float

    @property
    def mean_logprob(self) -> float:
        n = self.logprobs.size
        return float(self.total_logprob / n) if n else 0.0

    @property
    def perplexity(self) -> float:
        return float(np.exp(-self.mean_logprob))


@dataclass(frozen=True, slots=True)
class FallbackTokenDist:
    """Same fields and meaning as sway's ``TokenDist`` (three-state tail)."""

    token_ids: NDArray[np.int64]
    logprobs: NDArray[np.float32]
    vocab_size: int
    tail_logprob: float | None = field(default=None)


@functools.cache
def _sway_types() -> tuple[Any, Any]:
    try:
        from dlm_sway.core.scoring import RollingLogprob, TokenDist
    except ImportError:
        return FallbackRollingLogprob, FallbackTokenDist
    return RollingLogprob, TokenDist


def __getattr__(name: str) -> Any:
    """``RollingLogprob`` / ``TokenDist``: sway's classes when importable.

    Resolved on first use, not at import: importing dlm-sway (and pydantic)
    costs ~0.1 s, which a host that only spawns workers should not pay.
    """
    if name == "RollingLogprob":
        return _sway_types()[0]
    if name == "TokenDist":
        return _sway_types()[1]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class ProbeError(ValueError):
    """sway's ``ProbeError`` where dlm-sway is not installed (an isolated MLX env, say).

    It goes on the wire under sway's name, with its ``probe`` attribute, so
    the host raises sway's own class either way: a caller's
    ``except ProbeError`` must not depend on the worker's environment.
    """

    wire_type = "dlm_sway.core.errors.ProbeError"

    def __init__(self, probe: str, message: str) -> None:
        super().__init__(f"probe {probe!r}: {message}")
        self.probe = probe


def probe_error(probe: str, message: str) -> Exception:
    """The exception sway raises for a scoring input it cannot serve.

    sway's HF backend raises ``ProbeError`` (e.g. a completion that
    tokenizes to zero tokens); without sway the stand-in above carries the
    same message, name and attributes, and both map to
    ``ERROR_REASON_BAD_ARGUMENT``.
    """
    try:
        from dlm_sway.core.errors import ProbeError as SwayProbeError
    except ImportError:
        return ProbeError(probe, message)
    error: Exception = SwayProbeError(probe, message)
    return error
