"""The host-side object that looks exactly like an in-process sway backend.

``RemoteBackend`` satisfies sway's runtime-checkable protocols *exactly as
far as the worker's capabilities go*: ``proxy_class()`` composes the class
from mixins, so ``isinstance(proxy, ScalableDifferentialBackend)`` is False
for a worker that cannot scale, just as it would be in process.

Every call goes through the backend's ``Supervisor``, which restarts a
crashed or hung worker and retries the call; with a journal
(``WorkerOptions.journal``) results already scored by an earlier run are
served from it and only the rest reach the worker.

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
from swayhost.journal import Entry, Journal, request_key
from swayhost.spec import ModelSpec
from swayhost.stats import BackendStats
from swayhost.supervisor import Supervisor

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

    def __init__(self, supervisor: Supervisor, spec: ModelSpec) -> None:
        self._supervisor = supervisor
        self.description = supervisor.description
        self.spec = spec
        self._local = threading.local()
        caps = self.description.capabilities
        self.__sway_protocols__: tuple[str, ...] = tuple(
            p for p in caps.protocols if p != "PreflightCheckable"
        )
        self._journal: Journal | None = None
        if spec.worker.journal is not None:
            self._journal = Journal.open(spec.worker.journal, self.cache_identity())
            supervisor.stats.sink = self._journal.record_event

    # -- identity ----------------------------------------------------------

    @property
    def name(self) -> str:
        return self._supervisor.name

    @property
    def pid(self) -> int:
        """The pid of the worker serving now (it changes when the worker is restarted)."""
        return self._conn.process.pid

    @property
    def _conn(self) -> WorkerConnection:
        """The connection to the worker serving now; tests reach its process through it."""
        return self._supervisor.connection

    def stats(self) -> BackendStats:
        """Scoring and recovery counters: restarts, retries, hangs, journal hits..."""
        return self._supervisor.snapshot()

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
        """One request, one unary RPC (or a journal lookup)."""
        self._require(request.op)
        key = self._key(request)
        if key is not None:
            stored = self._stored([key])
            if key in stored:
                return result_from_proto(stored[key])
        response = self._supervisor.score(request_to_proto(request))
        if key is not None:
            self._record([(key, OP_NAMES[type(request.op)], response)])
        return result_from_proto(response)

    def score_many(
        self, requests: Sequence[Request], *, return_exceptions: bool = False
    ) -> list[Any]:
        """Many requests in as few ScoreBatch RPCs as the worker's limits allow.

        Each request fails alone: with ``return_exceptions`` its slot holds the
        exception, otherwise the first failure is raised after all ran.
        """
        requests = list(requests)
        for request in requests:
            self._require(request.op)
        results: list[Any] = [None] * len(requests)
        keys = [self._key(r) for r in requests]
        stored = self._stored([k for k in keys if k is not None])
        pending = []
        for i, key in enumerate(keys):
            if key is not None and key in stored:
                results[i] = result_from_proto(stored[key])
            else:
                pending.append(i)
        for chunk in self._chunks([requests[i] for i in pending]):
            # chunks keep the order, so each one holds the next len(chunk) pending indices
            indices, pending = pending[: len(chunk)], pending[len(chunk) :]
            items = self._supervisor.score_batch([request_to_proto(r) for r in chunk])
            entries: list[Entry] = []
            for i, item in zip(indices, items, strict=True):
                results[i] = self._item_value(item)
                key = keys[i]
                if key is not None and not isinstance(item, Exception) and item.HasField("result"):
                    entries.append((key, OP_NAMES[type(requests[i].op)], item.result))
            self._record(entries)
        if not return_exceptions:
            for value in results:
                if isinstance(value, BaseException):
                    raise value
        return results

    def _item_value(self, item: pb.ScoreBatchItem | Exception) -> Any:
        if isinstance(item, Exception):
            return item
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

    # -- journal -----------------------------------------------------------

    def _key(self, request: Request) -> str | None:
        return None if self._journal is None else request_key(self.cache_identity(), request)

    def _stored(self, keys: list[str]) -> dict[str, pb.ScoreResponse]:
        if self._journal is None or not keys:
            return {}
        found = self._journal.get_many(keys)
        self._supervisor.stats.add("journal_hit", len(found))
        return found

    def _record(self, entries: list[Entry]) -> None:
        """Write results to the journal as they arrive, so a killed run loses none."""
        if self._journal is not None and entries:
            self._journal.put_many(entries)

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
        """Stop the worker (and its standby), close the journal; safe to call more than once."""
        self._supervisor.close()
        if self._journal is not None:
            self._supervisor.stats.sink = None
            self._journal.close()

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
        supervisor: Supervisor = self._supervisor  # type: ignore[attr-defined]
        response = supervisor.preflight()
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


def make_proxy(supervisor: Supervisor, spec: ModelSpec) -> RemoteBackend:
    """The proxy for a started supervisor; it opens the journal when the spec names one."""
    caps = supervisor.description.capabilities
    cls = proxy_class(caps.scalable, caps.null_calibrated, caps.preflight)
    return cls(supervisor, spec)


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
