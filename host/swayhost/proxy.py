"""The host-side object that looks exactly like an in-process sway backend.

``RemoteBackend`` satisfies sway's runtime-checkable protocols *exactly as
far as the worker's capabilities go*: ``proxy_class()`` composes the class
from mixins, so ``isinstance(proxy, ScalableDifferentialBackend)`` is False
for a worker that cannot scale, just as it would be in process.

View exclusivity is enforced per thread, like sway does for one caller:
entering a second view while one is active raises ``RuntimeError``, and a
view used after its ``with`` block ends raises too. Across threads views are
independent, because every request names its view and the worker
serialises calls on shared weights, so the proxy is safe for concurrent
views.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from swayplugin.v1 import backend_pb2 as pb
from swayworker.codec import (
    OP_NAMES,
    Generate,
    LogprobOf,
    NextTokenDist,
    Op,
    Request,
    RollingLogprobOp,
    ViewKey,
    request_to_proto,
    result_from_proto,
)

from swayhost.connection import WorkerConnection
from swayhost.errors import UnsupportedCapabilityError, rebuild_exception
from swayhost.spec import ModelSpec

DEFAULT_TOP_K = 256
_BATCH_BYTES_FRACTION = 4
"""Keep each ScoreBatch message under 1/4 of the message limit, both ways."""


def view_id(key: ViewKey) -> str:
    """The view's ``id`` as sway's HF backend names it."""
    if key.kind == "scaled":
        return f"scaled_{key.lam:.2f}"
    if key.kind == "null":
        if key.rank_scale == 1.0:
            return f"null_{key.seed}"
        return f"null_{key.seed}_rank{key.rank_scale:.2f}"
    return key.kind


class RemoteView:
    """One view of a remote backend: sway's ``ScoringModel`` surface, plus batches."""

    def __init__(self, backend: RemoteBackend, key: ViewKey) -> None:
        self.id = view_id(key)
        self.key = key
        self._backend = backend
        self._closed = False

    def _score(self, op: Op) -> Any:
        self._check_open()
        return self._backend.score(Request(self.key, op))

    def _score_many(self, ops: list[Op], return_exceptions: bool) -> list[Any]:
        self._check_open()
        return self._backend.score_many(
            [Request(self.key, op) for op in ops], return_exceptions=return_exceptions
        )

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(
                f"view {self.id!r} was used after its with-block ended; enter the view again"
            )

    # -- sway's ScoringBackend + Model -------------------------------------

    def logprob_of(self, prompt: str, completion: str) -> float:
        return float(self._score(LogprobOf(prompt, completion)))

    def rolling_logprob(self, text: str) -> Any:
        return self._score(RollingLogprobOp(text))

    def next_token_dist(self, prompt: str, *, top_k: int = DEFAULT_TOP_K) -> Any:
        return self._score(NextTokenDist(prompt, int(top_k)))

    def generate(
        self,
        prompt: str,
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int = 0,
    ) -> str:
        return str(
            self._score(
                Generate(prompt, int(max_new_tokens), float(temperature), float(top_p), int(seed))
            )
        )

    def close(self) -> None:
        return None

    # -- batches: one RPC (or a few) for many prompts ------------------------

    def logprob_of_many(
        self, pairs: Sequence[tuple[str, str]], *, return_exceptions: bool = False
    ) -> list[Any]:
        """``logprob_of`` for many (prompt, completion) pairs in one round trip."""
        return self._score_many([LogprobOf(p, c) for p, c in pairs], return_exceptions)

    def rolling_logprob_many(
        self, texts: Sequence[str], *, return_exceptions: bool = False
    ) -> list[Any]:
        return self._score_many([RollingLogprobOp(t) for t in texts], return_exceptions)

    def next_token_dist_many(
        self, prompts: Sequence[str], *, top_k: int = DEFAULT_TOP_K, return_exceptions: bool = False
    ) -> list[Any]:
        return self._score_many([NextTokenDist(p, int(top_k)) for p in prompts], return_exceptions)


class RemoteBackend:
    """A differential backend served by a worker process."""

    safe_for_concurrent_views: bool = True

    def __init__(
        self, connection: WorkerConnection, description: pb.DescribeResponse, spec: ModelSpec
    ) -> None:
        self._conn = connection
        self.description = description
        self.spec = spec
        self._local = threading.local()
        caps = description.capabilities
        self.__sway_protocols__: tuple[str, ...] = tuple(
            p for p in caps.protocols if p != "PreflightCheckable"
        )

    # -- identity ----------------------------------------------------------

    @property
    def name(self) -> str:
        return self._conn.name

    @property
    def pid(self) -> int:
        return self._conn.process.pid

    def cache_identity(self) -> str:
        identity = self.description.model.cache_identity
        return identity or f"{self.description.worker_kind}:{self.spec.base}:{self.spec.adapter}"

    # -- views -------------------------------------------------------------

    def as_base(self) -> Any:
        return self._view(ViewKey.base())

    def as_finetuned(self) -> Any:
        return self._view(ViewKey.ft())

    @contextmanager
    def _view(self, key: ViewKey) -> Iterator[RemoteView]:
        active = getattr(self._local, "active", None)
        if active is not None:
            raise RuntimeError(
                f"view {active!r} already active; exit it before entering {key.label()!r}."
            )
        self._local.active = key.label()
        view = RemoteView(self, key)
        try:
            yield view
        finally:
            view._closed = True
            self._local.active = None

    # -- scoring -----------------------------------------------------------

    def score(self, request: Request) -> Any:
        """One request, one unary RPC."""
        self._require(request.op)
        response = self._conn.call(self._conn.stub.Score, request_to_proto(request))
        return result_from_proto(response)

    def score_many(
        self, requests: Sequence[Request], *, return_exceptions: bool = False
    ) -> list[Any]:
        """Many requests in as few ScoreBatch RPCs as the worker's limits allow.

        Each request fails alone: with ``return_exceptions`` its slot holds the
        exception, otherwise the first failure is raised after all ran.
        """
        for request in requests:
            self._require(request.op)
        results: list[Any] = []
        for chunk in self._chunks(list(requests)):
            message = pb.ScoreBatchRequest(requests=[request_to_proto(r) for r in chunk])
            response = self._conn.call(self._conn.stub.ScoreBatch, message)
            results.extend(self._item_value(item) for item in response.items)
        if not return_exceptions:
            for value in results:
                if isinstance(value, BaseException):
                    raise value
        return results

    def _item_value(self, item: pb.ScoreBatchItem) -> Any:
        if item.HasField("error"):
            err = item.error
            return rebuild_exception(
                reason=pb.ErrorReason.Name(err.reason),
                message=err.message,
                exception_type=err.exception_type,
                attrs_json=err.attrs_json,
                hint=err.hint,
                worker=self.name,
            )
        return result_from_proto(item.result)

    def _chunks(self, requests: list[Request]) -> Iterator[list[Request]]:
        limits = self.description.limits
        max_items = limits.max_batch or len(requests) or 1
        budget = max(1, limits.max_message_bytes // _BATCH_BYTES_FRACTION)
        chunk: list[Request] = []
        used = 0
        for request in requests:
            size = _estimated_bytes(request, self.description.model.vocab_size)
            if chunk and (len(chunk) >= max_items or used + size > budget):
                yield chunk
                chunk, used = [], 0
            chunk.append(request)
            used += size
        if chunk:
            yield chunk

    def _require(self, op: Op) -> None:
        name = OP_NAMES[type(op)]
        if not getattr(self.description.capabilities, name):
            raise UnsupportedCapabilityError(
                f"worker {self.name!r} ({self.description.worker_kind}) does not offer "
                f"{name}; its capabilities: {_offered(self.description.capabilities)}",
                worker=self.name,
            )

    # -- lifecycle ---------------------------------------------------------

    def close(self) -> None:
        """Stop the worker; safe to call more than once."""
        self._conn.close()

    def __enter__(self) -> RemoteBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} worker={self.name!r} kind={self.description.worker_kind!r} "
            f"pid={self.pid} protocols={self.__sway_protocols__}>"
        )


class _Scalable:
    def as_scaled_adapter(self, lam: float) -> Any:
        return self._view(ViewKey.scaled(lam))  # type: ignore[attr-defined]


class _NullCalibrated:
    def as_null_adapter(
        self, seed: int, *, init_scale: float = 0.02, rank_scale: float = 1.0
    ) -> Any:
        if rank_scale <= 0.0 or not math.isfinite(rank_scale):
            raise ValueError(f"rank_scale must be positive and finite; got {rank_scale!r}")
        return self._view(ViewKey.null(seed, init_scale, rank_scale))  # type: ignore[attr-defined]


class _Preflight:
    def preflight_finite_check(self) -> tuple[bool, str]:
        conn: WorkerConnection = self._conn  # type: ignore[attr-defined]
        response = conn.call(conn.stub.Preflight, pb.PreflightRequest())
        return bool(response.ok), str(response.reason)


@functools.cache
def proxy_class(scalable: bool, null_calibrated: bool, preflight: bool) -> type[RemoteBackend]:
    """The proxy class with exactly these optional protocols."""
    mixins: list[type] = []
    name = "Remote"
    if scalable:
        mixins.append(_Scalable)
        name += "Scalable"
    if null_calibrated:
        mixins.append(_NullCalibrated)
        name += "NullCalibrated"
    if preflight:
        mixins.append(_Preflight)
        name += "Preflight"
    return type(f"{name}Backend", (*mixins, RemoteBackend), {"__module__": __name__})


def make_proxy(
    connection: WorkerConnection, description: pb.DescribeResponse, spec: ModelSpec
) -> RemoteBackend:
    caps = description.capabilities
    cls = proxy_class(caps.scalable, caps.null_calibrated, caps.preflight)
    return cls(connection, description, spec)


def _estimated_bytes(request: Request, vocab_size: int) -> int:
    """Rough request + response size, to keep batches under the message limit."""
    op = request.op
    text = sum(len(getattr(op, f, "")) for f in ("prompt", "completion", "text")) * 4
    if isinstance(op, NextTokenDist):
        k = min(op.top_k, vocab_size) if vocab_size else op.top_k
        return text + 12 * k + 64
    if isinstance(op, RollingLogprobOp):
        return text * 4 + 64
    return text + 64


def _offered(caps: pb.Capabilities) -> str:
    names = [n for n in OP_NAMES.values() if getattr(caps, n)]
    return ", ".join(names) if names else "none"
