"""What every check sees: the worker under test, its advertised capabilities,
and the requests the kit sends on its behalf.

The views and operations exercised are exactly the advertised ones: a worker
is judged on what it claims, and what it does not claim must be refused (see
``errors.unimplemented``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from swayplugin.v1 import backend_pb2 as pb
from swayworker.codec import (
    Generate,
    LogprobOf,
    NextTokenDist,
    Op,
    RollingLogprobOp,
    ViewKey,
)

from swayhost.conformance.result import CheckFailed
from swayhost.conformance.session import Excerpts, RpcFailure, WorkerUnderTest, score_request
from swayhost.errors import SwayHostError
from swayhost.spec import ModelSpec

TOP_K = 8
"""The top_k of ordinary next_token_dist requests: small, below any real vocabulary."""
GENERATE_TOKENS = 4
SCALED = ViewKey.scaled(0.5)
NULL = ViewKey.null(7, init_scale=0.02, rank_scale=1.0)
DEFAULT_PROMPT = "The sky is"
DEFAULT_COMPLETION = " blue today"


Labelled = tuple[str, ViewKey, Op]
"""A request with its name in messages, e.g. ('ft/logprob_of', view, op)."""


@dataclass
class Context:
    """State shared by the checks of one run, filled in as the run goes."""

    spec: ModelSpec
    prompt: str = DEFAULT_PROMPT
    completion: str = DEFAULT_COMPLETION
    worker: WorkerUnderTest | None = None
    started: pb.DescribeResponse | None = None
    """Describe as answered right after the handshake, before Load."""
    loaded: pb.DescribeResponse | None = None
    """The description Load returned."""
    answers: list[tuple[Labelled, pb.ScoreResponse]] = field(default_factory=list)
    """The determinism check's answers, to compare a fresh worker process with."""
    twin: WorkerUnderTest | None = None
    """A second process of the worker, started and loaded by ``second_process``."""
    twin_loaded: pb.DescribeResponse | None = None
    twin_failure: str = ""
    excerpts: Excerpts = field(default_factory=Excerpts)
    """Shows each long worker message once in the whole report."""

    # -- what the worker claims ---------------------------------------------

    @property
    def live(self) -> WorkerUnderTest:
        if self.worker is None:
            raise CheckFailed("the worker is not running")
        return self.worker

    @property
    def caps(self) -> pb.Capabilities:
        if self.loaded is None:
            raise CheckFailed("no model is loaded")
        return self.loaded.capabilities

    @property
    def vocab_size(self) -> int:
        """The advertised vocabulary size (0: not advertised)."""
        return int(self.loaded.model.vocab_size) if self.loaded is not None else 0

    def views(self) -> list[ViewKey]:
        """Every view the worker advertises (base and ft always)."""
        caps = self.caps
        views = [ViewKey.base(), ViewKey.ft()]
        if caps.scalable:
            views.append(SCALED)
        if caps.null_calibrated:
            views.append(NULL)
        return views

    def all_ops(self) -> list[Op]:
        """One ordinary request per operation of the contract."""
        p, c = self.prompt, self.completion
        return [
            LogprobOf(p, c),
            RollingLogprobOp(p + c),
            NextTokenDist(p, TOP_K),
            Generate(p, GENERATE_TOKENS),
        ]

    def ops(self) -> list[Op]:
        """One ordinary request per advertised operation."""
        return [op for op in self.all_ops() if getattr(self.caps, op.name)]

    def requests(self) -> list[Labelled]:
        """Every advertised operation on every advertised view."""
        return [(label(view, op), view, op) for view in self.views() for op in self.ops()]

    def any_op(self) -> Op:
        ops = self.ops()
        if not ops:
            raise CheckFailed("the worker advertises no scoring operation")
        return ops[0]

    # -- shared probes --------------------------------------------------------

    def second_process(self) -> tuple[WorkerUnderTest, pb.DescribeResponse]:
        """A second worker process given the same spec, loaded: what a restart gets.

        Started once and shared by the checks that compare it with the
        first (cache identity, bytes); the runner stops it at the end.
        """
        if self.twin_failure:
            raise CheckFailed(self.twin_failure)
        if self.twin is not None and self.twin_loaded is not None:
            return self.twin, self.twin_loaded
        self.twin = WorkerUnderTest(self.spec, self.excerpts)
        try:
            self.twin.start()
        except SwayHostError as exc:
            self.twin_failure = f"a second process did not start: {exc}"
            raise CheckFailed(self.twin_failure) from None
        loaded = self.twin.rpc("Load", pb.LoadRequest(spec=self.spec.to_proto()))
        if isinstance(loaded, RpcFailure):
            self.twin_failure = f"the second process failed Load: {loaded}"
            raise CheckFailed(self.twin_failure)
        self.twin_loaded = loaded.description
        return self.twin, loaded.description

    def close(self) -> None:
        """Stop every worker process this run started."""
        for worker in (self.worker, self.twin):
            if worker is not None:
                worker.close()

    def still_serving(self) -> str | None:
        """A problem message when an ordinary request no longer succeeds."""
        outcome = self.live.score(ViewKey.base(), self.any_op())
        if isinstance(outcome, RpcFailure):
            return f"an ordinary request failed afterwards: {outcome}"
        return None


def label(view: ViewKey, op: Op) -> str:
    """'ft/next_token_dist' style name of one request, for messages."""
    return f"{view.label()}/{op.name}"


def without_view(op: Op) -> pb.ScoreRequest:
    """A request for ``op`` that names no view: invalid by the contract."""
    message = score_request(ViewKey.base(), op)
    message.ClearField("view")
    return message
