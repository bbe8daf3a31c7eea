"""The gRPC servicer: contract requests -> calls on a sway-style backend.

Every request names its view, and the servicer enters that view's context
manager for it. A backend that toggles shared weights is not safe for
concurrent views, so its calls are serialised with a lock, and the view last
entered stays open for the next request on it (``HeldView``), as it would in
a caller's ``with`` block; a backend that declares
``safe_for_concurrent_views`` gets a fresh view per call, unlocked. A batch is
grouped by view and by operation, and uses the view's ``*_many`` methods when
it has them (real padded forward passes).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from swayplugin.v1 import backend_pb2 as pb
from swayplugin.v1 import backend_pb2_grpc as pb_grpc

from swayworker import capabilities as caps
from swayworker.codec import (
    Generate,
    LogprobOf,
    NextTokenDist,
    Op,
    RollingLogprobOp,
    ViewKey,
    request_from_proto,
    result_to_proto,
)
from swayworker.errors import NotLoaded, UnsupportedOperation, WireError, classify
from swayworker.held_view import HeldView
from swayworker.protocol import PROTOCOL_VERSION
from swayworker.results import probe_error

log = logging.getLogger("swayworker")

Loader = Callable[[pb.ModelSpec], Any]
Outcome = Any | BaseException
"""A result value, or the exception that failed that one item."""


class BackendServicer(pb_grpc.DifferentialBackendServicer):
    """Serves one backend object (given up front or built by ``loader`` on Load)."""

    def __init__(
        self,
        *,
        backend: Any | None,
        loader: Loader | None,
        worker_kind: str,
        on_shutdown: Callable[[], None],
    ) -> None:
        self._backend = backend
        self._loader = loader
        self._spec: pb.ModelSpec | None = None
        self._worker_kind = worker_kind
        self._on_shutdown = on_shutdown
        self._load_lock = threading.Lock()
        self._view_lock = threading.Lock()
        self._held = HeldView(self._enter)
        self._caps: tuple[Any, pb.Capabilities] | None = None

    # -- metadata ----------------------------------------------------------

    def describe(self) -> pb.DescribeResponse:
        backend = self._backend
        response = pb.DescribeResponse(
            protocol_version=PROTOCOL_VERSION,
            worker_kind=self._worker_kind,
            runtime=caps.runtime_info(os.getpid()),
            framework_versions=caps.framework_versions_of(backend),
            limits=caps.limits_of(backend),  # the message limit holds before Load too
        )
        if self._spec is not None:
            response.loaded_spec.CopyFrom(self._spec)
        if backend is not None:
            response.capabilities.CopyFrom(caps.capabilities_of(backend))
            response.model.CopyFrom(caps.model_info_of(backend, self._spec))
            response.safe_for_concurrent_views = bool(
                getattr(backend, "safe_for_concurrent_views", False)
            )
        return response

    def Describe(self, request: pb.DescribeRequest, context: grpc.ServicerContext) -> Any:
        return self.describe()

    def Load(self, request: pb.LoadRequest, context: grpc.ServicerContext) -> Any:
        try:
            return pb.LoadResponse(description=self.load(request.spec))
        except Exception as exc:
            log.info("load failed: %s: %s", type(exc).__name__, exc)
            classify(exc).abort(context)
            raise  # unreachable: abort raises

    def load(self, spec: pb.ModelSpec) -> pb.DescribeResponse:
        """Build the backend for ``spec`` (unless it is the one loaded); the new description.

        Loading the spec already loaded changes nothing, so a host that
        attaches to a running service Loads its ``loaded_spec`` safely.
        """
        with self._load_lock:
            if self._loader is not None and (self._backend is None or self._spec != spec):
                self._close_backend()
                self._spec = None
                self._backend = self._loader(spec)
                self._spec = pb.ModelSpec()
                self._spec.CopyFrom(spec)
            elif self._backend is None:
                raise NotLoaded("this worker has no backend and no loader")
            return self.describe()

    # -- scoring -----------------------------------------------------------

    def Score(self, request: pb.ScoreRequest, context: grpc.ServicerContext) -> Any:
        try:
            decoded = request_from_proto(request)
            backend = self._loaded()
            _validate(decoded.op, self._capabilities(backend))
            with self._view_of(backend, decoded.view) as view:
                value = _run_one(view, decoded.op)
            return result_to_proto(decoded.op, value, max_top_k=_max_top_k(backend))
        except Exception as exc:
            _fail(context, exc)
            raise  # unreachable: _fail aborts

    def ScoreBatch(self, request: pb.ScoreBatchRequest, context: grpc.ServicerContext) -> Any:
        outcomes = self.score_many(list(request.requests))
        max_top_k = _max_top_k(self._backend)
        items = []
        for outcome, op in outcomes:
            if isinstance(outcome, BaseException) or op is None:
                items.append(pb.ScoreBatchItem(error=classify(outcome).to_proto()))
            else:
                result = result_to_proto(op, outcome, max_top_k=max_top_k)
                items.append(pb.ScoreBatchItem(result=result))
        return pb.ScoreBatchResponse(items=items)

    def score_many(self, messages: list[pb.ScoreRequest]) -> list[tuple[Outcome, Op | None]]:
        """Run a batch; one outcome per request, in order, each failing alone."""
        outcomes: list[Outcome] = [None] * len(messages)
        ops: list[Op | None] = [None] * len(messages)
        groups: dict[ViewKey, list[int]] = {}
        try:
            backend = self._loaded()
        except NotLoaded as exc:
            return [(exc, None) for _ in messages]
        for i, msg in enumerate(messages):
            try:
                decoded = request_from_proto(msg)
                _validate(decoded.op, self._capabilities(backend))
            except Exception as exc:
                outcomes[i] = exc
                continue
            ops[i] = decoded.op
            groups.setdefault(decoded.view, []).append(i)
        # The view already held goes first: a batch mixing two views switches once, not twice.
        held = self._held.key
        for view_key in sorted(groups, key=lambda key: key != held):
            self._run_group(backend, view_key, groups[view_key], ops, outcomes)
        return list(zip(outcomes, ops, strict=True))

    def _run_group(
        self,
        backend: Any,
        view_key: ViewKey,
        indices: list[int],
        ops: list[Op | None],
        outcomes: list[Outcome],
    ) -> None:
        try:
            with self._view_of(backend, view_key) as view:
                for idx, value in _run_batched(view, [(i, ops[i]) for i in indices]):
                    outcomes[idx] = value
        except Exception as exc:  # entering or leaving the view failed
            for i in indices:
                if outcomes[i] is None:
                    outcomes[i] = exc

    # -- preflight / shutdown ----------------------------------------------

    def Preflight(self, request: pb.PreflightRequest, context: grpc.ServicerContext) -> Any:
        try:
            backend = self._loaded()
            check = getattr(backend, "preflight_finite_check", None)
            if not callable(check):
                raise UnsupportedOperation("this backend does not implement preflight")
            with self._serialised(backend):
                self._held.release()  # the check enters the views itself
                ok, reason = check()
            return pb.PreflightResponse(ok=bool(ok), reason=str(reason))
        except Exception as exc:
            _fail(context, exc)
            raise

    def Shutdown(self, request: pb.ShutdownRequest, context: grpc.ServicerContext) -> Any:
        log.info("shutdown requested by the host")
        self._on_shutdown()
        return pb.ShutdownResponse()

    def close(self) -> None:
        with self._load_lock:
            self._close_backend()

    # -- internals ---------------------------------------------------------

    def _capabilities(self, backend: Any) -> pb.Capabilities:
        """``backend``'s capabilities, found once per backend object rather than per request.

        Discovering them inspects the backend's methods and builds a message:
        a cost paid on every call for an answer that cannot change.
        """
        cached = self._caps
        if cached is None or cached[0] is not backend:
            cached = self._caps = (backend, caps.capabilities_of(backend))
        return cached[1]

    def _loaded(self) -> Any:
        if self._backend is None:
            raise NotLoaded("no model is loaded: call Load with a model spec first")
        return self._backend

    def _close_backend(self) -> None:
        with self._view_lock:
            self._held.release()
        close = getattr(self._backend, "close", None)
        if callable(close):
            try:
                close()
            except Exception:
                log.exception("backend close() failed")
        self._backend = None

    @contextlib.contextmanager
    def _serialised(self, backend: Any) -> Iterator[None]:
        if getattr(backend, "safe_for_concurrent_views", False):
            yield
            return
        with self._view_lock:
            yield

    @contextlib.contextmanager
    def _view_of(self, backend: Any, key: ViewKey) -> Iterator[Any]:
        """The view for a call: entered for it alone, or held (locked) between calls.

        A call that raises releases the held view, so whatever the failure
        did to the backend's state is undone by the view's own exit.
        """
        if getattr(backend, "safe_for_concurrent_views", False):
            with self._enter(backend, key) as view:
                yield view
            return
        with self._view_lock:
            view = self._held.view(backend, key)
            try:
                yield view
            except BaseException:
                self._held.release()
                raise

    @staticmethod
    def _enter(backend: Any, view: ViewKey) -> Any:
        """The backend's context manager for ``view`` (entered by the caller)."""
        if view.kind == "base":
            return backend.as_base()
        if view.kind == "ft":
            return backend.as_finetuned()
        if view.kind == "scaled":
            scaled = getattr(backend, "as_scaled_adapter", None)
            if not callable(scaled):
                raise UnsupportedOperation("this backend has no scaled view (as_scaled_adapter)")
            return scaled(view.lam)
        null = getattr(backend, "as_null_adapter", None)
        if not callable(null):
            raise UnsupportedOperation("this backend has no null view (as_null_adapter)")
        return null(view.seed, init_scale=view.init_scale, rank_scale=view.rank_scale)


def _fail(context: grpc.ServicerContext, exc: BaseException) -> None:
    error: WireError = classify(exc)
    if error.reason == pb.ERROR_REASON_INTERNAL:
        log.error("internal error", exc_info=exc)
    error.abort(context)


def _max_top_k(backend: Any) -> int:
    """The cap the backend advertises on ``top_k`` (0: none)."""
    return int(getattr(backend, "max_top_k", 0) or 0)


def _validate(op: Op, supported: pb.Capabilities) -> None:
    """Reject bad arguments before they reach the backend, with a clear message."""
    if isinstance(op, LogprobOf):
        if not supported.logprob_of:
            raise UnsupportedOperation("this backend cannot serve logprob_of")
        if op.completion == "":
            raise probe_error(
                "logprob_of", "completion is empty; it must tokenize to at least one token"
            )
    elif isinstance(op, RollingLogprobOp):
        if not supported.rolling_logprob:
            raise UnsupportedOperation("this backend cannot serve rolling_logprob")
    elif isinstance(op, NextTokenDist):
        if not supported.next_token_dist:
            raise UnsupportedOperation("this backend cannot serve next_token_dist")
        if op.top_k <= 0:
            raise ValueError(f"top_k must be a positive integer, got {op.top_k}")
    else:
        if not supported.generate:
            raise UnsupportedOperation("this backend cannot serve generate")
        if op.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {op.max_new_tokens}")
        if op.temperature < 0 or not math.isfinite(op.temperature):
            raise ValueError(f"temperature must be finite and >= 0, got {op.temperature}")
        if not 0 < op.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {op.top_p}")


def _run_one(view: Any, op: Op) -> Any:
    if isinstance(op, LogprobOf):
        return view.logprob_of(op.prompt, op.completion)
    if isinstance(op, RollingLogprobOp):
        return view.rolling_logprob(op.text)
    if isinstance(op, NextTokenDist):
        return view.next_token_dist(op.prompt, top_k=op.top_k)
    assert isinstance(op, Generate)
    return view.generate(
        op.prompt,
        max_new_tokens=op.max_new_tokens,
        temperature=op.temperature,
        top_p=op.top_p,
        seed=op.seed,
    )


def _run_batched(view: Any, items: list[tuple[int, Op | None]]) -> Iterator[tuple[int, Outcome]]:
    """Run the items of one view, batching per operation where the view can."""
    by_kind: dict[tuple[type, int], list[tuple[int, Any]]] = {}
    for idx, op in items:
        top_k = op.top_k if isinstance(op, NextTokenDist) else 0
        by_kind.setdefault((type(op), top_k), []).append((idx, op))
    for (kind, top_k), group in by_kind.items():
        many = _many_method(view, kind)
        if many is not None and len(group) > 1:
            try:
                values = many([op for _, op in group], top_k)
                if len(values) != len(group):
                    raise RuntimeError(
                        f"batched call returned {len(values)} results for {len(group)} items"
                    )
                yield from zip((i for i, _ in group), values, strict=True)
                continue
            except Exception:
                log.exception("batched %s failed; retrying item by item", kind.__name__)
        for idx, op in group:
            try:
                yield idx, _run_one(view, op)
            except Exception as exc:
                yield idx, exc


def _many_method(view: Any, kind: type) -> Callable[[list[Any], int], list[Outcome]] | None:
    """The view's batched method for ``kind``, adapted to (ops, top_k)."""
    if kind is LogprobOf and callable(getattr(view, "logprob_of_many", None)):
        return lambda ops, _k: view.logprob_of_many([(op.prompt, op.completion) for op in ops])
    if kind is RollingLogprobOp and callable(getattr(view, "rolling_logprob_many", None)):
        return lambda ops, _k: view.rolling_logprob_many([op.text for op in ops])
    if kind is NextTokenDist and callable(getattr(view, "next_token_dist_many", None)):
        return lambda ops, k: view.next_token_dist_many([op.prompt for op in ops], k)
    return None
