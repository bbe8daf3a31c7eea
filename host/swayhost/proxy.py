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
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Literal, cast, overload

from swayplugin.v1 import backend_pb2 as pb
from swayworker.capabilities import DEFAULT_MAX_BATCH
from swayworker.codec import (
    OPS,
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
from swayworker.results import RollingLogprobResult, Score, TokenDistResult

from swayhost import arguments
from swayhost.cache import ResultCache
from swayhost.coalesce import Coalescer
from swayhost.connection import WorkerConnection
from swayhost.errors import UnsupportedCapabilityError
from swayhost.journal import Entry, Journal, message_key
from swayhost.spec import ModelSpec
from swayhost.stats import BackendStats, SwayInstrumentation
from swayhost.supervisor import Supervisor

DEFAULT_TOP_K = 256
_BATCH_BYTES_FRACTION = 4
"""Keep each ScoreBatch message under 1/4 of the message limit, both ways."""


class RemoteView:
    """One view of a remote backend: sway's ``ScoringModel`` surface, plus batches."""

    def __init__(self, backend: RemoteBackend, key: ViewKey) -> None:
        self.id = key.sway_id()
        self.key = key
        self._backend = backend
        self._closed = False

    def _score(self, op: Op) -> Score:
        self._check_open()
        return self._backend.score(Request(self.key, op))

    def _score_many(
        self, items: list[Op | Exception], return_exceptions: bool
    ) -> list[Score | Exception]:
        """Score the ops; an item whose arguments failed their check (an exception) fails alone.

        Without ``return_exceptions`` a bad item is raised before anything is sent.
        """
        self._check_open()
        bad = [i for i, item in enumerate(items) if isinstance(item, Exception)]
        if bad and not return_exceptions:
            raise cast(Exception, items[bad[0]])
        good = [item for item in items if not isinstance(item, Exception)]
        scored = iter(
            self._backend.score_many(
                [Request(self.key, op) for op in good], return_exceptions=return_exceptions
            )
        )
        return [item if isinstance(item, Exception) else next(scored) for item in items]

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(
                f"view {self.id!r} was used after its with-block ended; enter the view again"
            )

    # -- sway's ScoringBackend + Model -------------------------------------
    # Each op's result has its op's type (codec decodes what the op asked for),
    # hence the casts from the general ``Score``.

    def logprob_of(self, prompt: str, completion: str) -> float:
        return float(cast(float, self._score(_logprob_of(prompt, completion))))

    def rolling_logprob(self, text: str) -> RollingLogprobResult:
        return cast(RollingLogprobResult, self._score(_rolling(text, "text")))

    def next_token_dist(self, prompt: str, *, top_k: int = DEFAULT_TOP_K) -> TokenDistResult:
        return cast(TokenDistResult, self._score(_next_token_dist(prompt, top_k, "prompt")))

    def generate(
        self,
        prompt: str,
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int = 0,
    ) -> str:
        op = Generate(
            arguments.text("prompt", prompt),
            arguments.integer("max_new_tokens", max_new_tokens, bits=32),
            arguments.real("temperature", temperature),
            arguments.real("top_p", top_p),
            arguments.integer("seed", seed),
        )
        return str(self._score(op))

    def close(self) -> None:
        return None

    # -- batches: one RPC (or a few) for many prompts ------------------------
    # With ``return_exceptions`` a failed item's slot holds its exception;
    # without, the first failure is raised after all ran.

    @overload
    def logprob_of_many(
        self, pairs: Sequence[tuple[str, str]], *, return_exceptions: Literal[False] = False
    ) -> list[float]: ...
    @overload
    def logprob_of_many(
        self, pairs: Sequence[tuple[str, str]], *, return_exceptions: bool
    ) -> list[float | Exception]: ...
    def logprob_of_many(
        self, pairs: Sequence[tuple[str, str]], *, return_exceptions: bool = False
    ) -> list[float] | list[float | Exception]:
        """``logprob_of`` for many (prompt, completion) pairs in one round trip."""
        ops = [_checked(_pair, item, f"pairs[{i}]") for i, item in enumerate(pairs)]
        return cast(list[float | Exception], self._score_many(ops, return_exceptions))

    @overload
    def rolling_logprob_many(
        self, texts: Sequence[str], *, return_exceptions: Literal[False] = False
    ) -> list[RollingLogprobResult]: ...
    @overload
    def rolling_logprob_many(
        self, texts: Sequence[str], *, return_exceptions: bool
    ) -> list[RollingLogprobResult | Exception]: ...
    def rolling_logprob_many(
        self, texts: Sequence[str], *, return_exceptions: bool = False
    ) -> list[RollingLogprobResult] | list[RollingLogprobResult | Exception]:
        ops = [_checked(_rolling, t, f"texts[{i}]") for i, t in enumerate(texts)]
        return cast(
            list[RollingLogprobResult | Exception], self._score_many(ops, return_exceptions)
        )

    @overload
    def next_token_dist_many(
        self,
        prompts: Sequence[str],
        *,
        top_k: int = DEFAULT_TOP_K,
        return_exceptions: Literal[False] = False,
    ) -> list[TokenDistResult]: ...
    @overload
    def next_token_dist_many(
        self, prompts: Sequence[str], *, top_k: int = DEFAULT_TOP_K, return_exceptions: bool
    ) -> list[TokenDistResult | Exception]: ...
    def next_token_dist_many(
        self, prompts: Sequence[str], *, top_k: int = DEFAULT_TOP_K, return_exceptions: bool = False
    ) -> list[TokenDistResult] | list[TokenDistResult | Exception]:
        k = arguments.top_k(top_k)  # one top_k for the whole call: a bad one fails it all
        ops = [_checked(_next_token_dist, p, k, f"prompts[{i}]") for i, p in enumerate(prompts)]
        return cast(list[TokenDistResult | Exception], self._score_many(ops, return_exceptions))


def _logprob_of(prompt: object, completion: object, where: str = "") -> LogprobOf:
    return LogprobOf(
        arguments.text(f"prompt{where}", prompt), arguments.text(f"completion{where}", completion)
    )


def _pair(pair: object, name: str) -> LogprobOf:
    """One item of ``logprob_of_many``: a (prompt, completion) pair of strings."""
    if not isinstance(pair, tuple | list) or len(pair) != 2:
        raise TypeError(
            f"{name} must be a (prompt, completion) pair, not {arguments.described(pair)}"
        )
    return _logprob_of(pair[0], pair[1], f" of {name}")


def _rolling(text: object, name: str) -> RollingLogprobOp:
    return RollingLogprobOp(arguments.text(name, text))


def _next_token_dist(prompt: object, top_k: object, name: str) -> NextTokenDist:
    return NextTokenDist(arguments.text(name, prompt), arguments.top_k(top_k))


def _checked(make: Callable[..., Op], *args: object) -> Op | Exception:
    """``make(*args)``, or the ``TypeError``/``ValueError`` its checks raised (that item fails)."""
    try:
        return make(*args)
    except (TypeError, ValueError) as exc:
        return exc


class RemoteBackend:
    """A differential backend served by a worker process."""

    safe_for_concurrent_views: bool = True

    def __init__(
        self,
        supervisor: Supervisor,
        spec: ModelSpec,
        description: pb.DescribeResponse | None = None,
        *,
        adapter: str = "",
    ) -> None:
        self._supervisor = supervisor
        self.description = description or supervisor.description
        self.spec = spec
        self._adapter = adapter
        """Named in every request when the worker serves several adapters (``build_many``)."""
        self._released = False
        self.load_error: Exception | None = None
        """Why this backend's adapter could not be loaded (``build_many``); None when it was."""
        self._local = threading.local()
        caps = self.description.capabilities
        self.__sway_protocols__: tuple[str, ...] = tuple(
            p for p in caps.protocols if p != "PreflightCheckable"
        )
        self._inst = SwayInstrumentation(supervisor.stats)
        """sway's runner reads ``_inst.stats`` into a report's ``backend_stats``."""
        self._identity = self.cache_identity()
        """Fixed for the backend's life: a restarted worker must keep it (the supervisor checks)."""
        options = spec.worker
        self._journal: Journal | None = None
        if options.journal is not None:
            self._journal = Journal.open(options.journal, self._identity)
            supervisor.stats.sink = self._journal.record_event
        self._cache = ResultCache(options.cache_bytes) if options.cache_bytes else None
        limits = self.description.limits
        self._batch_budget = max(1, limits.max_message_bytes // _BATCH_BYTES_FRACTION)
        self._coalescer: Coalescer[pb.ScoreRequest, pb.ScoreResponse] | None = None
        if options.dynamic_batching:
            self._coalescer = Coalescer(
                supervisor.score,
                self._supervisor.score_batch,
                max_items=limits.max_batch or DEFAULT_MAX_BATCH,
                max_cost=self._batch_budget,
                window_s=options.batch_window_s,
            )

    # -- identity ----------------------------------------------------------

    @property
    def name(self) -> str:
        return self._supervisor.name

    @property
    def pid(self) -> int:
        """The pid of the worker serving now (it changes when the worker is restarted)."""
        return self._conn.endpoint.pid

    @property
    def transport(self) -> str:
        """How scoring calls reach the worker: ``frames`` (the local framed path) or ``grpc``."""
        return self._conn.transport

    @property
    def _conn(self) -> WorkerConnection:
        """The connection to the worker serving now; tests reach its endpoint through it."""
        return self._supervisor.connection

    def stats(self) -> BackendStats:
        """Scoring and recovery counters: restarts, retries, hangs, journal hits..."""
        return self._supervisor.snapshot()

    def cache_identity(self) -> str:
        identity = self.description.model.cache_identity
        return identity or f"{self.description.worker_kind}:{self.spec.base}:{self.spec.adapter}"

    # -- views -------------------------------------------------------------

    def as_base(self) -> AbstractContextManager[RemoteView]:
        return self._view(ViewKey.base())

    def as_finetuned(self) -> AbstractContextManager[RemoteView]:
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

    def score(self, request: Request) -> Score:
        """One request: from the cache or the journal, else one RPC.

        The RPC is unary, or, while other threads are scoring on this
        backend, one slot of a ScoreBatch shared with them (``coalesce``).
        """
        started = time.perf_counter()
        try:
            return self._score_one(request)
        finally:
            self._inst.add_wall(time.perf_counter() - started)

    def _score_one(self, request: Request) -> Score:
        self._require(request.op)
        message = request_to_proto(request)
        key = self._key(message)
        message.adapter = self._adapter
        if key is not None:
            found = self._lookup([key])
            if key in found:
                return result_from_proto(found[key])
        if self._coalescer is None:
            response = self._supervisor.score(message)
        else:
            size = _estimated_bytes(request, self.description.model.vocab_size)
            response = self._coalescer.submit(message, size)
        if key is not None:
            self._keep([(key, request.op.name, response)])
        return result_from_proto(response)

    def score_many(
        self, requests: Sequence[Request], *, return_exceptions: bool = False
    ) -> list[Score | Exception]:
        """Many requests in as few ScoreBatch RPCs as the worker's limits allow.

        Each request fails alone: with ``return_exceptions`` its slot holds the
        exception, otherwise the first failure is raised after all ran.
        """
        started = time.perf_counter()
        try:
            return self._score_all(list(requests), return_exceptions)
        finally:
            self._inst.add_wall(time.perf_counter() - started)

    def _score_all(
        self, requests: list[Request], return_exceptions: bool
    ) -> list[Score | Exception]:
        for request in requests:
            self._require(request.op)
        messages = [request_to_proto(r) for r in requests]
        keys = [self._key(m) for m in messages]
        for message in messages:
            message.adapter = self._adapter
        found = self._lookup([k for k in keys if k is not None])
        results: list[Score | Exception | None] = [None] * len(requests)
        pending = []
        for i, key in enumerate(keys):
            if key is not None and key in found:
                results[i] = result_from_proto(found[key])
            else:
                pending.append(i)
        for chunk in self._chunks(pending, requests):
            outcomes = self._supervisor.score_batch([messages[i] for i in chunk])
            entries: list[Entry] = []
            for i, outcome in zip(chunk, outcomes, strict=True):
                if isinstance(outcome, Exception):
                    results[i] = outcome
                    continue
                results[i] = result_from_proto(outcome)
                key = keys[i]
                if key is not None:
                    entries.append((key, requests[i].op.name, outcome))
            self._keep(entries)
        if not return_exceptions:
            for value in results:
                if isinstance(value, BaseException):
                    raise value
        return cast(list[Score | Exception], results)  # every slot is filled by now

    def _chunks(self, indices: list[int], requests: list[Request]) -> Iterator[list[int]]:
        """``indices`` cut into batches within the worker's item and message limits."""
        limits = self.description.limits
        max_items = limits.max_batch or len(indices) or 1
        chunk: list[int] = []
        used = 0
        for i in indices:
            size = _estimated_bytes(requests[i], self.description.model.vocab_size)
            if chunk and (len(chunk) >= max_items or used + size > self._batch_budget):
                yield chunk
                chunk, used = [], 0
            chunk.append(i)
            used += size
        if chunk:
            yield chunk

    # -- cache and journal -------------------------------------------------

    def _key(self, message: pb.ScoreRequest) -> str | None:
        """The request's cache and journal key; None when neither is on.

        Taken before the adapter is named in the message: the identity already
        names it, so a backend of ``build_many`` and one of ``build`` with the
        same adapter share their keys (and journals).
        """
        if self._cache is None and self._journal is None:
            return None
        return message_key(self._identity, message)

    def _lookup(self, keys: list[str]) -> dict[str, pb.ScoreResponse]:
        """Stored responses for ``keys``: the cache, then the journal (its hits fill the cache)."""
        found: dict[str, pb.ScoreResponse] = {}
        missing = keys
        if self._cache is not None:
            missing = []
            for key in keys:
                response = self._cache.get(key)
                if response is None:
                    missing.append(key)
                else:
                    found[key] = response
            self._supervisor.stats.add("cache_hit", len(found))
            self._supervisor.stats.add("cache_miss", len(missing))
        if self._journal is not None and missing:
            stored = self._journal.get_many(missing)
            self._supervisor.stats.add("journal_hit", len(stored))
            if self._cache is not None:
                for key, response in stored.items():
                    self._cache.put(key, response)
            found.update(stored)
        return found

    def _keep(self, entries: list[Entry]) -> None:
        """Cache fresh results; journal them as they arrive, so a killed run loses none."""
        if self._cache is not None:
            for key, _, response in entries:
                self._cache.put(key, response)
        if self._journal is not None and entries:
            self._journal.put_many(entries)

    def _require(self, op: Op) -> None:
        name = op.name
        if not getattr(self.description.capabilities, name):
            raise UnsupportedCapabilityError(
                f"worker {self.name!r} ({self.description.worker_kind}) does not offer "
                f"{name}; its capabilities: {_offered(self.description.capabilities)}",
                worker=self.name,
            )

    # -- lifecycle ---------------------------------------------------------

    def close(self) -> None:
        """Stop the worker (and its standby), close the journal; safe to call more than once.

        A worker shared by several backends (``build_many``) stops with the last one.
        """
        if self._released:
            return
        self._released = True
        self._supervisor.release()
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
    def as_scaled_adapter(self, lam: float) -> AbstractContextManager[RemoteView]:
        lam = arguments.finite("lam", lam)
        return cast(RemoteBackend, self)._view(ViewKey.scaled(lam))  # mixed into RemoteBackend


class _NullCalibrated:
    def as_null_adapter(
        self, seed: int, *, init_scale: float = 0.02, rank_scale: float = 1.0
    ) -> AbstractContextManager[RemoteView]:
        rank_scale = arguments.real("rank_scale", rank_scale)
        if rank_scale <= 0.0 or not math.isfinite(rank_scale):
            raise ValueError(f"rank_scale must be positive and finite; got {rank_scale!r}")
        init_scale = arguments.finite("init_scale", init_scale)
        seed = arguments.integer("seed", int(seed))  # int() as sway's backends take it: "3" is 3
        backend = cast(RemoteBackend, self)  # mixed into RemoteBackend
        return backend._view(ViewKey.null(seed, init_scale, rank_scale))


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


def make_proxy(
    supervisor: Supervisor,
    spec: ModelSpec,
    description: pb.DescribeResponse | None = None,
    *,
    adapter: str = "",
) -> RemoteBackend:
    """The proxy for a started supervisor; it opens the journal when the spec names one.

    ``description`` and ``adapter`` make it the proxy of one resident adapter
    of a worker that holds several (``Supervisor.add_adapter``).
    """
    caps = (description or supervisor.description).capabilities
    cls = proxy_class(caps.scalable, caps.null_calibrated, caps.preflight)
    return cls(supervisor, spec, description, adapter=adapter)


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
    names = [n for n in OPS if getattr(caps, n)]
    return ", ".join(names) if names else "none"
