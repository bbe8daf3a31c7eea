"""The conformance checks, in the order they run.

Each check is a function of the shared ``Context`` that returns a one-line
note on success and raises ``CheckFailed`` / ``CheckSkipped`` otherwise.
``needs`` says what must already be true for it to make sense: a worker
that started, or a loaded model; the runner skips it with the reason when not.
``section`` is where the worker-author guide states the rule it checks
(``swayhost conformance --json`` reports it, so a failure points at the
text to read); a check of a module about one section gets it by default.
Adding a check is one line in ``CHECKS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from swayhost.conformance.checks import adapters, errors, lifecycle, scoring
from swayhost.conformance.checks.context import Context

Needs = Literal["nothing", "worker", "model"]

GUIDE = "docs/writing-a-worker.md"
START_UP = "1-start-up"
HANDSHAKE = "2-the-socket-and-the-handshake-line"
SERVICES = "3-the-services"
DESCRIBE = "4-describe-and-load"
SCORE = "5-score-views-operations-results"
ERRORS = "6-errors"
SHUTDOWN = "7-shutting-down"
MODULE_SECTIONS = {errors.__name__: ERRORS, scoring.__name__: SCORE}
"""The guide's section of every check in a module about one section."""


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    needs: Needs
    run: Callable[[Context], str]
    ends_worker: bool = False
    """It stops the worker under test (Shutdown)."""
    own_process: bool = False
    """It starts processes of its own, so it runs even once the first worker is gone."""
    anchor: str = ""
    """The guide's section that states the rule (default: its module's section)."""

    @property
    def title(self) -> str:
        """The check's one-line purpose (its function's docstring)."""
        return (self.run.__doc__ or self.name).strip().splitlines()[0]

    @property
    def section(self) -> str:
        """Where the guide states the rule: ``docs/writing-a-worker.md#6-errors``."""
        anchor = self.anchor or MODULE_SECTIONS.get(self.run.__module__, "")
        return f"{GUIDE}#{anchor}" if anchor else ""


CHECKS: tuple[Check, ...] = (
    Check("cookie", "nothing", lifecycle.cookie, anchor=START_UP),
    Check("handshake", "nothing", lifecycle.handshake, anchor=HANDSHAKE),
    Check("socket", "worker", lifecycle.socket_private, anchor=HANDSHAKE),
    Check("health", "worker", lifecycle.health, anchor=SERVICES),
    Check("not-loaded", "worker", errors.not_loaded),
    Check("load", "worker", lifecycle.load, anchor=DESCRIBE),
    Check("describe", "model", lifecycle.describe, anchor=DESCRIBE),
    Check("worker-kind", "model", lifecycle.worker_kind, anchor=DESCRIBE),
    Check("loaded-spec", "model", lifecycle.loaded_spec, anchor=DESCRIBE),
    Check("operations", "model", scoring.operations),
    Check("distribution", "model", scoring.distribution),
    Check("generate", "model", scoring.generate),
    Check("determinism", "model", scoring.determinism),
    Check("batch", "model", scoring.batch),
    Check("concurrency", "model", scoring.concurrency),
    Check("scaled-endpoints", "model", scoring.scaled_endpoints),
    Check("preflight", "model", scoring.preflight, anchor=DESCRIBE),
    Check("unimplemented", "model", errors.unimplemented),
    Check("error:empty-completion", "model", errors.empty_completion),
    Check("error:top-k", "model", errors.bad_top_k),
    Check("error:no-view", "model", errors.no_view),
    Check("error:no-operation", "model", errors.no_operation),
    Check("error:max-new-tokens", "model", errors.max_new_tokens),
    Check("error:null-rank-scale", "model", errors.null_rank_scale),
    Check("error:oversized-prompt", "model", errors.oversized_prompt),
    Check("resident-adapters", "model", adapters.resident_adapters, anchor=DESCRIBE),
    Check("shutdown", "worker", lifecycle.shutdown, ends_worker=True, anchor=SHUTDOWN),
    Check("cache-identity", "model", lifecycle.cache_identity, own_process=True, anchor=DESCRIBE),
    Check("restart", "model", scoring.restart, own_process=True),
    Check("parent-death", "worker", lifecycle.parent_death, own_process=True, anchor=SHUTDOWN),
)
