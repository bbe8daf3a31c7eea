"""The conformance checks, in the order they run.

Each check is a function of the shared ``Context`` that returns a one-line
note on success and raises ``CheckFailed`` / ``CheckSkipped`` otherwise.
``needs`` says what must already be true for it to make sense: a worker
that started, or a loaded model; the runner skips it with the reason when not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from swayhost.conformance.checks import adapters, errors, lifecycle, scoring
from swayhost.conformance.checks.context import Context

Needs = Literal["nothing", "worker", "model"]


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    needs: Needs
    run: Callable[[Context], str]
    ends_worker: bool = False
    """It stops the worker under test (Shutdown)."""
    own_process: bool = False
    """It starts processes of its own, so it runs even once the first worker is gone."""

    @property
    def title(self) -> str:
        """The check's one-line purpose (its function's docstring)."""
        return (self.run.__doc__ or self.name).strip().splitlines()[0]


CHECKS: tuple[Check, ...] = (
    Check("cookie", "nothing", lifecycle.cookie),
    Check("handshake", "nothing", lifecycle.handshake),
    Check("socket", "worker", lifecycle.socket_private),
    Check("health", "worker", lifecycle.health),
    Check("not-loaded", "worker", errors.not_loaded),
    Check("load", "worker", lifecycle.load),
    Check("describe", "model", lifecycle.describe),
    Check("operations", "model", scoring.operations),
    Check("distribution", "model", scoring.distribution),
    Check("determinism", "model", scoring.determinism),
    Check("batch", "model", scoring.batch),
    Check("concurrency", "model", scoring.concurrency),
    Check("scaled-endpoints", "model", scoring.scaled_endpoints),
    Check("preflight", "model", scoring.preflight),
    Check("unimplemented", "model", errors.unimplemented),
    Check("error:empty-completion", "model", errors.empty_completion),
    Check("error:top-k", "model", errors.bad_top_k),
    Check("error:no-view", "model", errors.no_view),
    Check("error:no-operation", "model", errors.no_operation),
    Check("error:max-new-tokens", "model", errors.max_new_tokens),
    Check("error:null-rank-scale", "model", errors.null_rank_scale),
    Check("error:oversized-prompt", "model", errors.oversized_prompt),
    Check("resident-adapters", "model", adapters.resident_adapters),
    Check("shutdown", "worker", lifecycle.shutdown, ends_worker=True),
    Check("restart", "model", scoring.restart, own_process=True),
    Check("parent-death", "worker", lifecycle.parent_death, own_process=True),
)
