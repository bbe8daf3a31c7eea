"""The gRPC servicer: contract requests -> calls on a sway-style backend.

Every request names its view, and the servicer enters that view's context
manager for it. A backend that toggles shared weights is not safe for
concurrent views, so its calls are serialised: they all run on one
``ModelThread`` (which also keeps torch to one pool of intra-op threads), and
the view last entered stays open for the next request on it (``HeldView``),
as it would in a caller's ``with`` block; a backend that declares
``safe_for_concurrent_views`` gets a fresh view per call, on the gRPC thread
that took it. Load, Preflight and close always run on the model thread. A
batch is grouped by view and by operation, and uses the view's ``*_many``
methods when it has them (real padded forward passes).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

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
from swayworker.errors import BadSpec, NotLoaded, UnsupportedOperation, classify, report
from swayworker.held_view import HeldView
from swayworker.model_thread import ModelThread
from swayworker.protocol import PROTOCOL_VERSION
from swayworker.results import probe_error

log = logging.getLogger("swayworker")

Loader = Callable[[pb.ModelSpec], Any]
Outcome = Any | BaseException
"""A result value, or the exception that failed that one item."""
T = TypeVar("T")


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
        self._model = ModelThread()
        self._held = HeldView(self._enter)
        self._caps: tuple[Any, pb.Capabilities] | None = None

    # -- metadata ----------------------------------------------------------

    def describe(
        self, backend: Any | None = None, spec: pb.ModelSpec | None = None
    ) -> pb.DescribeResponse:
        """What the worker is; with ``backend`` and ``spec``, one resident adapter of it."""
        if backend is None:
            backend, spec = self._backend, self._spec
        response = pb.DescribeResponse(
            protocol_version=PROTOCOL_VERSION,
            worker_kind=self._worker_kind,
            runtime=caps.runtime_info(os.getpid()),
            framework_versions=caps.framework_versions_of(backend),
            limits=caps.limits_of(backend),  # the message limit holds before Load too
        )
        if spec is not None:
            response.loaded_spec.CopyFrom(spec)
        if backend is not None:
            response.capabilities.CopyFrom(caps.capabilities_of(backend))
            response.model.CopyFrom(caps.model_info_of(backend, spec))
            response.safe_for_concurrent_views = _concurrent(backend)
        return response

    def Describe(self, request: pb.DescribeRequest, context: grpc.ServicerContext) -> Any:
        return self.describe()

    def Load(self, request: pb.LoadRequest, context: grpc.ServicerContext) -> Any:
        try:
            return pb.LoadResponse(
                description=self.load(request.spec, keep_resident=request.keep_resident)
            )
        except Exception as exc:
            log.info("load failed: %s: %s", type(exc).__name__, exc)
            classify(exc).abort(context)
            raise  # unreachable: abort raises

    def load(self, spec: pb.ModelSpec, *, keep_resident: bool = False) -> pb.DescribeResponse:
        """Build the backend for ``spec`` (unless it is the one loaded); the new description.

        Loading the spec already loaded changes nothing, so a host that
        attaches to a running service Loads its ``loaded_spec`` safely. The
        same base with another adapter swaps the adapter on a backend that
        can (``swap_adapter``, True when it did), keeping the base; with ``keep_resident`` the
        adapter joins the resident ones instead, and the description is that
        adapter's. The build runs on the model thread, so the model is made
        on the thread that will run it (and two Loads never overlap).
        """
        if keep_resident:
            target = self._model.call(lambda: self._add_resident(spec))
            return self.describe(target, spec)
        self._model.call(lambda: self._load_here(spec))
        return self.describe()

    def _load_here(self, spec: pb.ModelSpec) -> None:
        backend = self._backend
        if self._loader is not None and backend is not None and self._spec is not None:
            if self._spec == spec:
                return
            swap = getattr(backend, "swap_adapter", None)
            if callable(swap) and spec.adapter and _same_base(spec, self._spec):
                self._held.release()
                if swap(spec.adapter):  # False: it cannot take this one in place
                    self._spec = _copy(spec)
                    return
        if self._loader is not None and (backend is None or self._spec != spec):
            self._close_backend()
            self._spec = None
            self._backend = self._loader(spec)
            self._spec = _copy(spec)
        elif backend is None:
            raise NotLoaded("this worker has no backend and no loader")
        elif self._loader is None:  # served as given: Load only records what it serves
            self._spec = pb.ModelSpec()
            self._spec.CopyFrom(spec)

    def _add_resident(self, spec: pb.ModelSpec) -> Any:
        """Load ``spec``'s adapter beside the resident ones; that adapter's backend."""
        backend = self._loaded()
        if self._spec is None or not _same_base(spec, self._spec):
            held = self._spec.base if self._spec is not None else "(a backend given up front)"
            raise BadSpec(
                f"a Load with keep_resident must name the base this worker holds ({held}, "
                f"same dtype, device and options); got base {spec.base!r}. Start another "
                "worker for another base."
            )
        target = self._target(backend, spec.adapter)
        target.preload(spec.adapter)
        return target

    def _target(self, backend: Any, adapter: str) -> Any:
        """The backend a request naming ``adapter`` runs on ("": the loaded one)."""
        if not adapter:
            return backend
        resident = getattr(backend, "resident_adapter", None)
        if not callable(resident):
            raise UnsupportedOperation(
                f"this {self._worker_kind!r} worker holds one adapter and cannot serve a "
                f"request naming adapter {adapter!r} (it lacks the resident_adapters "
                "capability); run one worker per adapter instead"
            )
        return resident(adapter)

    # -- scoring -----------------------------------------------------------

    def Score(self, request: pb.ScoreRequest, context: grpc.ServicerContext) -> Any:
        try:
            return self.score(request)
        except Exception as exc:
            _fail(context, exc)
            raise  # unreachable: _fail aborts

    def score(self, request: pb.ScoreRequest) -> pb.ScoreResponse:
        """One call (gRPC's Score and the framed path's); raises what failed it."""
        decoded = request_from_proto(request)
        backend = self._loaded()
        _validate(decoded.op, self._capabilities(backend))

        def score() -> Any:
            target = self._target(backend, request.adapter)
            with self._view_of(target, decoded.view) as view:
                return _run_one(view, decoded.op)

        value = self._serial(backend, score)
        return result_to_proto(decoded.op, value, max_top_k=_max_top_k(backend))

    def ScoreBatch(self, request: pb.ScoreBatchRequest, context: grpc.ServicerContext) -> Any:
        return self.score_batch(request)

    def score_batch(self, request: pb.ScoreBatchRequest) -> pb.ScoreBatchResponse:
        """A batch (gRPC's ScoreBatch and the framed path's); each item fails alone."""
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
        groups: dict[tuple[str, ViewKey], list[int]] = {}
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
            groups.setdefault((msg.adapter, decoded.view), []).append(i)

        def run_groups() -> None:
            # The view already held goes first: a batch mixing two views switches once, not twice.
            # Grouped by adapter first, so each adapter is selected once.
            held = self._held.key
            for adapter, view_key in sorted(groups, key=lambda k: (k[0], k[1] != held)):
                indices = groups[adapter, view_key]
                try:
                    target = self._target(backend, adapter)
                except Exception as exc:
                    for i in indices:
                        outcomes[i] = exc
                    continue
                self._run_group(target, view_key, indices, ops, outcomes)

        self._serial(backend, run_groups)
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

            def run_check() -> Any:
                self._held.release()  # the check enters the views itself
                return check()

            ok, reason = self._model.call(run_check)
            return pb.PreflightResponse(ok=bool(ok), reason=str(reason))
        except Exception as exc:
            _fail(context, exc)
            raise

    def Shutdown(self, request: pb.ShutdownRequest, context: grpc.ServicerContext) -> Any:
        log.info("shutdown requested by the host")
        self._on_shutdown()
        return pb.ShutdownResponse()

    def close(self) -> None:
        """Close the backend (after any Load or call in progress) and end the model thread."""
        self._model.call(self._close_backend)
        self._model.stop()

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
        """Leave the held view and close the backend; on the model thread."""
        self._held.release()
        close = getattr(self._backend, "close", None)
        if callable(close):
            try:
                close()
            except Exception:
                log.exception("backend close() failed")
        self._backend = None

    def run_framed(self, job: Callable[[], None]) -> None:
        """Run ``job`` (a framed call answered, its reply written) where its work belongs.

        For a serialised backend, or before any is loaded, the whole job is
        queued on the model thread and this returns at once: the call then
        crosses between threads once, and its decoding and encoding run on
        the thread that runs the model anyway (inside, ``_serial`` runs at
        once). A backend safe for concurrent views runs it here.
        """
        backend = self._backend
        if backend is not None and _concurrent(backend):
            job()
        else:
            self._model.submit(job)

    def _serial(self, backend: Any, work: Callable[[], T]) -> T:
        """Run ``work`` on the model thread, or here if ``backend`` allows concurrent views."""
        if _concurrent(backend):
            return work()
        return self._model.call(work)

    @contextlib.contextmanager
    def _view_of(self, backend: Any, key: ViewKey) -> Iterator[Any]:
        """The view for a call: entered for it alone, or held between calls.

        Used inside ``_serial``: the held view is only touched on the model
        thread. A call that raises releases the held view, so whatever the
        failure did to the backend's state is undone by the view's own exit.
        """
        if _concurrent(backend):
            with self._enter(backend, key) as view:
                yield view
            return
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


def _same_base(spec: pb.ModelSpec, other: pb.ModelSpec) -> bool:
    """Whether two specs differ at most in their adapter (base, dtype, device, options...)."""
    mine, theirs = _copy(spec), _copy(other)
    mine.ClearField("adapter")
    theirs.ClearField("adapter")
    return mine == theirs


def _copy(spec: pb.ModelSpec) -> pb.ModelSpec:
    copied = pb.ModelSpec()
    copied.CopyFrom(spec)
    return copied


def _concurrent(backend: Any) -> bool:
    """Whether ``backend`` declares its views safe to use from several threads at once."""
    return bool(getattr(backend, "safe_for_concurrent_views", False))


def _fail(context: grpc.ServicerContext, exc: BaseException) -> None:
    report(exc).abort(context)


def _max_top_k(backend: Any) -> int:
    """The cap the backend advertises on ``top_k`` (0: none)."""
    return int(getattr(backend, "max_top_k", 0) or 0)


@dataclass(frozen=True)
class _OpHandler:
    """How the servicer checks and runs one kind of operation (``codec.OPS`` names them)."""

    check: Callable[[Any], None]
    """Rejects bad arguments before they reach the backend, with a clear message."""
    run: Callable[[Any, Any], Any]
    """``(view, op)``: one call."""
    many: str
    """The view's batched method, if it has one (``*_many``)."""
    run_many: Callable[[Any, list[Any], int], list[Outcome]] | None
    """``(view, ops, top_k)``: one batched call."""
    settle: Callable[[Any, Any], Any] = lambda op, value: value
    """``(op, value)``: the value a call returned, or raises when no value is right for ``op``."""


def _settle_logprob_of(op: LogprobOf, value: Any) -> Any:
    """A number for an empty completion is wrong (the contract says so): sway's error instead.

    Checked after the backend ran, never before: a backend that refuses an
    empty completion keeps its own error (sway's HF and MLX backends name the
    prompt, its API backend words it otherwise); one that returned a number
    (sway's canned dummy returns -10.0) gets the words sway's HF backend uses.
    """
    if op.completion == "" and not isinstance(value, BaseException):
        raise probe_error(
            "logprob_of",
            f"completion tokenized to zero tokens (prompt={op.prompt!r}, completion='')",
        )
    return value


def _check_next_token_dist(op: NextTokenDist) -> None:
    if op.top_k <= 0:
        raise ValueError(f"top_k must be a positive integer, got {op.top_k}")


def _check_generate(op: Generate) -> None:
    if op.max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {op.max_new_tokens}")
    if op.temperature < 0 or not math.isfinite(op.temperature):
        raise ValueError(f"temperature must be finite and >= 0, got {op.temperature}")
    if not 0 < op.top_p <= 1:
        raise ValueError(f"top_p must be in (0, 1], got {op.top_p}")


HANDLERS: dict[str, _OpHandler] = {
    LogprobOf.name: _OpHandler(
        check=lambda op: None,  # an empty completion: the backend's, then _settle_logprob_of
        run=lambda view, op: view.logprob_of(op.prompt, op.completion),
        many="logprob_of_many",
        run_many=lambda view, ops, _k: view.logprob_of_many(
            [(op.prompt, op.completion) for op in ops]
        ),
        settle=_settle_logprob_of,
    ),
    RollingLogprobOp.name: _OpHandler(
        check=lambda op: None,
        run=lambda view, op: view.rolling_logprob(op.text),
        many="rolling_logprob_many",
        run_many=lambda view, ops, _k: view.rolling_logprob_many([op.text for op in ops]),
    ),
    NextTokenDist.name: _OpHandler(
        check=_check_next_token_dist,
        run=lambda view, op: view.next_token_dist(op.prompt, top_k=op.top_k),
        many="next_token_dist_many",
        run_many=lambda view, ops, k: view.next_token_dist_many([op.prompt for op in ops], k),
    ),
    Generate.name: _OpHandler(
        check=_check_generate,
        run=lambda view, op: view.generate(
            op.prompt,
            max_new_tokens=op.max_new_tokens,
            temperature=op.temperature,
            top_p=op.top_p,
            seed=op.seed,
        ),
        many="",
        run_many=None,
    ),
}
"""One entry per operation of the contract: the servicer's only dispatch on the op."""


def _validate(op: Op, supported: pb.Capabilities) -> None:
    """The backend must advertise the op (its capability flag has the op's name), and
    the op's arguments must make sense."""
    if not getattr(supported, op.name):
        raise UnsupportedOperation(f"this backend cannot serve {op.name}")
    HANDLERS[op.name].check(op)


def _run_one(view: Any, op: Op) -> Any:
    handler = HANDLERS[op.name]
    return handler.settle(op, handler.run(view, op))


def _settled(op: Op, value: Outcome) -> Outcome:
    """``value`` for ``op`` after its handler's ``settle``; the exception when it refuses."""
    try:
        return HANDLERS[op.name].settle(op, value)
    except Exception as exc:
        return exc


def _run_batched(view: Any, items: list[tuple[int, Op | None]]) -> Iterator[tuple[int, Outcome]]:
    """Run the items of one view, batching per operation (and top_k) where the view can."""
    by_kind: dict[tuple[str, int], list[tuple[int, Any]]] = {}
    for idx, op in items:
        assert op is not None  # items that failed to decode never reach a view
        by_kind.setdefault((op.name, int(getattr(op, "top_k", 0))), []).append((idx, op))
    for (name, top_k), group in by_kind.items():
        handler = HANDLERS[name]
        has_many = bool(handler.many) and callable(getattr(view, handler.many, None))
        batched = handler.run_many if has_many else None
        if batched is not None and len(group) > 1:
            try:
                values = batched(view, [op for _, op in group], top_k)
                if len(values) != len(group):
                    raise RuntimeError(
                        f"batched call returned {len(values)} results for {len(group)} items"
                    )
                for (idx, op), value in zip(group, values, strict=True):
                    yield idx, _settled(op, value)
                continue
            except Exception:
                log.exception("batched %s failed; retrying item by item", name)
        for idx, op in group:
            try:
                yield idx, _run_one(view, op)
            except Exception as exc:
                yield idx, exc
