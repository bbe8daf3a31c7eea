"""Typed Python values <-> contract messages, for both host and worker.

One module owns the mapping so the two sides can never disagree on it.
Arrays travel as raw little-endian bytes (int64 ids, float32 logprobs) and
are decoded with ``numpy.frombuffer``: no per-element Python loop anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from swayplugin.v1 import backend_pb2 as pb

from swayworker import results

ViewKind = Literal["base", "ft", "scaled", "null"]

_IDS = np.dtype("<i8")
_LOGPROBS = np.dtype("<f4")


@dataclass(frozen=True, slots=True)
class ViewKey:
    """Which view a request runs on; hashable so batches can be grouped."""

    kind: ViewKind
    lam: float = 0.0
    seed: int = 0
    init_scale: float = 0.0
    rank_scale: float = 0.0

    @staticmethod
    def base() -> ViewKey:
        return ViewKey("base")

    @staticmethod
    def ft() -> ViewKey:
        return ViewKey("ft")

    @staticmethod
    def scaled(lam: float) -> ViewKey:
        return ViewKey("scaled", lam=float(lam))

    @staticmethod
    def null(seed: int, init_scale: float = 0.02, rank_scale: float = 1.0) -> ViewKey:
        return ViewKey(
            "null", seed=int(seed), init_scale=float(init_scale), rank_scale=float(rank_scale)
        )

    def sway_id(self) -> str:
        """The view's ``id`` as sway's HF backend names it: ``scaled_0.50``, ``null_3_rank2.00``."""
        if self.kind == "scaled":
            return f"scaled_{self.lam:.2f}"
        if self.kind == "null":
            if self.rank_scale == 1.0:
                return f"null_{self.seed}"
            return f"null_{self.seed}_rank{self.rank_scale:.2f}"
        return self.kind

    def label(self) -> str:
        """Human-readable name, as sway labels views."""
        if self.kind == "scaled":
            return f"scaled({self.lam})"
        if self.kind == "null":
            return f"null({self.seed}, init_scale={self.init_scale}, rank={self.rank_scale})"
        return self.kind


@dataclass(frozen=True, slots=True)
class LogprobOf:
    prompt: str
    completion: str

    name: ClassVar[str] = "logprob_of"
    """The op's name: its capability flag and its field in ``ScoreRequest``'s oneof."""

    def write(self, msg: pb.ScoreRequest) -> None:
        msg.logprob_of.prompt = self.prompt
        msg.logprob_of.completion = self.completion

    @staticmethod
    def read(msg: pb.ScoreRequest) -> LogprobOf:
        return LogprobOf(msg.logprob_of.prompt, msg.logprob_of.completion)


@dataclass(frozen=True, slots=True)
class RollingLogprobOp:
    text: str

    name: ClassVar[str] = "rolling_logprob"

    def write(self, msg: pb.ScoreRequest) -> None:
        msg.rolling_logprob.text = self.text

    @staticmethod
    def read(msg: pb.ScoreRequest) -> RollingLogprobOp:
        return RollingLogprobOp(msg.rolling_logprob.text)


@dataclass(frozen=True, slots=True)
class NextTokenDist:
    prompt: str
    top_k: int

    name: ClassVar[str] = "next_token_dist"

    def write(self, msg: pb.ScoreRequest) -> None:
        msg.next_token_dist.prompt = self.prompt
        msg.next_token_dist.top_k = self.top_k

    @staticmethod
    def read(msg: pb.ScoreRequest) -> NextTokenDist:
        return NextTokenDist(msg.next_token_dist.prompt, msg.next_token_dist.top_k)


@dataclass(frozen=True, slots=True)
class Generate:
    prompt: str
    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int = 0

    name: ClassVar[str] = "generate"

    def write(self, msg: pb.ScoreRequest) -> None:
        msg.generate.CopyFrom(
            pb.GenerateOp(
                prompt=self.prompt,
                max_new_tokens=self.max_new_tokens,
                temperature=self.temperature,
                top_p=self.top_p,
                seed=self.seed,
            )
        )

    @staticmethod
    def read(msg: pb.ScoreRequest) -> Generate:
        g = msg.generate
        return Generate(g.prompt, g.max_new_tokens, g.temperature, g.top_p, g.seed)


Op = LogprobOf | RollingLogprobOp | NextTokenDist | Generate
OPS: dict[str, type[Op]] = {
    op.name: op for op in (LogprobOf, RollingLogprobOp, NextTokenDist, Generate)
}
"""The operation table: each op by its name, which is also its field in ``ScoreRequest``."""


@dataclass(frozen=True, slots=True)
class Request:
    """One self-contained scoring call: a view and an operation."""

    view: ViewKey
    op: Op


# -- views -----------------------------------------------------------------


def view_to_proto(view: ViewKey) -> pb.View:
    if view.kind == "base":
        return pb.View(base=pb.BaseView())
    if view.kind == "ft":
        return pb.View(ft=pb.FinetunedView())
    if view.kind == "scaled":
        return pb.View(scaled=pb.ScaledView(lam=view.lam))
    return pb.View(
        null=pb.NullView(seed=view.seed, init_scale=view.init_scale, rank_scale=view.rank_scale)
    )


def view_from_proto(msg: pb.View) -> ViewKey:
    kind = msg.WhichOneof("kind")
    if kind == "base":
        return ViewKey.base()
    if kind == "ft":
        return ViewKey.ft()
    if kind == "scaled":
        return ViewKey.scaled(msg.scaled.lam)
    if kind == "null":
        return ViewKey.null(msg.null.seed, msg.null.init_scale, msg.null.rank_scale)
    raise ValueError("the request names no view: set one of base, ft, scaled or null")


# -- requests --------------------------------------------------------------


def request_to_proto(request: Request) -> pb.ScoreRequest:
    msg = pb.ScoreRequest(view=view_to_proto(request.view))
    request.op.write(msg)
    return msg


def request_from_proto(msg: pb.ScoreRequest) -> Request:
    view = view_from_proto(msg.view)
    op = OPS.get(msg.WhichOneof("op") or "")
    if op is None:
        raise ValueError(
            "the request names no operation: set one of logprob_of, rolling_logprob, "
            "next_token_dist or generate"
        )
    return Request(view, op.read(msg))


# -- results ---------------------------------------------------------------


def result_to_proto(op: Op, value: Any, *, max_top_k: int = 0) -> pb.ScoreResponse:
    """Encode what a backend returned for ``op``.

    ``max_top_k`` is the worker's advertised cap (0: none): a distribution
    asked with a larger ``top_k`` was served with the cap instead, and the
    result says so in ``clamped_top_k``.
    """
    if isinstance(op, LogprobOf):
        return pb.ScoreResponse(logprob=float(value))
    if isinstance(op, Generate):
        return pb.ScoreResponse(text=str(value))
    if isinstance(op, RollingLogprobOp):
        return pb.ScoreResponse(
            rolling=pb.RollingLogprobResult(
                token_ids=np.ascontiguousarray(value.token_ids, dtype=_IDS).tobytes(),
                logprobs=np.ascontiguousarray(value.logprobs, dtype=_LOGPROBS).tobytes(),
                num_tokens=int(value.num_tokens),
                total_logprob=float(value.total_logprob),
            )
        )
    dist = pb.TokenDistResult(
        token_ids=np.ascontiguousarray(value.token_ids, dtype=_IDS).tobytes(),
        logprobs=np.ascontiguousarray(value.logprobs, dtype=_LOGPROBS).tobytes(),
        vocab_size=int(value.vocab_size),
    )
    if value.tail_logprob is not None:
        dist.tail_logprob = float(value.tail_logprob)
    if isinstance(op, NextTokenDist) and 0 < max_top_k < op.top_k:
        dist.clamped_top_k = max_top_k
    return pb.ScoreResponse(dist=dist)


def result_from_proto(msg: pb.ScoreResponse) -> results.Score:
    """Decode a result into a float, str, RollingLogprob or TokenDist."""
    which = msg.WhichOneof("result")
    if which == "logprob":
        return msg.logprob
    if which == "text":
        return msg.text
    if which == "rolling":
        r = msg.rolling
        rolling: results.RollingLogprobResult = results.RollingLogprob(
            token_ids=np.frombuffer(r.token_ids, dtype=_IDS).astype(np.int64),
            logprobs=np.frombuffer(r.logprobs, dtype=_LOGPROBS).astype(np.float32),
            num_tokens=int(r.num_tokens),
            total_logprob=float(r.total_logprob),
        )
        return rolling
    if which == "dist":
        d = msg.dist
        dist: results.TokenDistResult = results.TokenDist(
            token_ids=np.frombuffer(d.token_ids, dtype=_IDS).astype(np.int64),
            logprobs=np.frombuffer(d.logprobs, dtype=_LOGPROBS).astype(np.float32),
            vocab_size=int(d.vocab_size),
            tail_logprob=d.tail_logprob if d.HasField("tail_logprob") else None,
        )
        return dist
    raise ValueError("the worker sent an empty result")
