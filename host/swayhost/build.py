"""``build``, ``build_many`` and ``build_two_separate``: sway's dispatch, every backend
out of process.

Mirrors sway's ``dlm_sway.backends.build``: the same dispatch on ``kind``
and the same validation errors (raised here, before any process starts,
where the spec alone shows the problem), but each backend is a worker
process behind a ``RemoteBackend`` proxy.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Protocol

from swayplugin.v1 import backend_pb2 as pb
from swayworker.custom import check_entry_point

from swayhost.detached import DetachedLauncher
from swayhost.endpoint import Launcher
from swayhost.errors import (
    BackendNotAvailable,
    EnvError,
    WorkerBadSpec,
    WorkerCrashedError,
    WorkerStartError,
    as_host_error,
    spec_validation_error,
)
from swayhost.launch import launch
from swayhost.local import ForkingLauncher, LocalLauncher
from swayhost.nesting import refuse_inside_worker
from swayhost.proxy import RemoteBackend, RemoteView, make_proxy
from swayhost.spec import ModelSpec, WorkerOptions, coerce_spec
from swayhost.supervisor import Supervisor

log = logging.getLogger("swayhost")


def build(
    base_spec: object, *, adapter_path: Path | None = None, worker: WorkerOptions | None = None
) -> RemoteBackend:
    """Materialise a differential backend from a model spec, in a worker process.

    ``base_spec`` is a ``swayhost.ModelSpec`` or a ``dlm_sway`` ``ModelSpec``;
    ``worker`` overrides how the worker runs (interpreter, command, env).
    """
    spec = coerce_spec(base_spec, worker)
    effective_adapter = adapter_path if adapter_path is not None else spec.adapter
    return spawn(checked(spec.with_adapter(effective_adapter)))


def checked(spec: ModelSpec) -> ModelSpec:
    """``spec``, or sway's error for what the spec alone shows is wrong."""
    effective_adapter = spec.adapter
    if spec.kind == "dummy":
        raise spec_validation_error(
            "kind='dummy' backends must be constructed directly via "
            "DummyDifferentialBackend(base=..., ft=...); they cannot be "
            "materialized from a ModelSpec."
        )
    if spec.kind == "hf" and effective_adapter is None:
        raise spec_validation_error(
            "hf backend requires an adapter path (set `adapter:` on the ft model)"
        )
    if spec.kind == "mlx" and effective_adapter is None:
        raise spec_validation_error(
            "mlx backend requires an adapter path (set `adapter:` on the ft model; "
            "must be an MLX .npz adapter — use dlm's peft→mlx converter if needed)"
        )
    if spec.kind == "api" and spec.endpoint is None:
        raise spec_validation_error(
            "api backend requires `endpoint:` on the ModelSpec "
            "(the base URL of the /v1/completions server)"
        )
    if spec.kind == "custom":
        try:
            check_entry_point(spec.entry_point)
        except Exception as exc:  # sway's class or the worker SDK's: make it a host error too
            raise as_host_error(exc, WorkerBadSpec) from None
    if spec.kind not in ("hf", "mlx", "api", "custom"):
        raise spec_validation_error(f"unknown backend kind: {spec.kind!r}")
    return spec


def build_many(
    base_spec: object, adapters: Sequence[str | Path], *, worker: WorkerOptions | None = None
) -> list[RemoteBackend]:
    """One differential backend per adapter, all served by one worker holding the base once.

    Each backend is a full sway backend (base, ft, scaled and null views;
    its own cache identity, journal and preflight) whose requests name its
    adapter; the worker keeps up to ``max_resident_adapters`` adapters
    loaded (``WorkerOptions.options``, default 8) and reloads an evicted
    one when it is named again. The worker must claim the
    ``resident_adapters`` capability (the HF worker does); for another
    worker this raises ``UnsupportedCapabilityError``. With
    ``WorkerOptions.journal`` set, each adapter journals to a file of its
    own: beside the named file (``<stem>-<digest of the adapter>.sqlite``),
    or, when it names a folder, in that folder by cache identity (as
    ``swayhost sweep`` uses it), so a sweep resumes per adapter.

    An adapter that cannot be loaded on this base (another base's shapes, a
    corrupt file) fails alone: its backend's ``load_error`` holds the error,
    which names its path, and every call on it raises that error again; the
    other backends are unaffected. The worker stops when the last backend
    is closed.
    """
    paths = [Path(a).expanduser().resolve() for a in adapters]
    if not paths:
        raise ValueError("build_many needs at least one adapter path; got an empty sequence")
    spec = coerce_spec(base_spec, worker)
    specs = [checked(_for_adapter(spec, path, len(paths))) for path in paths]
    first = _first_that_loads(specs)
    backends: list[RemoteBackend] = []
    supervisor = first._supervisor
    try:
        for adapter_spec in specs:
            if adapter_spec is first.spec:
                backends.append(first)
                continue
            supervisor.retain()
            backends.append(_resident(supervisor, adapter_spec))
    except BaseException:
        first.close()
        for backend in backends:
            if backend is not first:
                backend.close()
        raise
    return backends


_NOT_THE_ADAPTER = (WorkerCrashedError, WorkerStartError, BackendNotAvailable, EnvError)
"""Start failures no other adapter would avoid: raised at once by ``build_many``."""


def _first_that_loads(specs: list[ModelSpec]) -> RemoteBackend:
    """A worker started with the first adapter that loads.

    One that fails here is tried again beside it (``_resident``), where its
    error names its path; only when none loads is the first error raised.
    """
    first_error: Exception | None = None
    for adapter_spec in specs:
        try:
            return spawn(adapter_spec)
        except _NOT_THE_ADAPTER:
            raise
        except Exception as exc:  # this adapter does not load; the next one may
            log.warning("build_many: adapter %s did not load: %s", adapter_spec.adapter, exc)
            first_error = first_error or exc
    assert first_error is not None  # specs is not empty
    raise first_error


def _resident(supervisor: Supervisor, spec: ModelSpec) -> RemoteBackend:
    """The backend of ``spec``'s adapter on ``supervisor``'s worker (retained for it).

    A bad adapter (the worker's ``WorkerBadSpec``, naming the path) gives a
    backend whose ``load_error`` says so; its calls raise the same error.
    """
    adapter = str(spec.adapter)
    try:
        description = supervisor.add_adapter(spec)
    except WorkerBadSpec as exc:
        description = pb.DescribeResponse()
        description.CopyFrom(supervisor.description)
        description.model.cache_identity = ""  # the proxy names it by kind, base and adapter
        description.model.adapter_path = adapter
        log.warning("build_many: %s", exc)
        backend = make_proxy(supervisor, spec, description, adapter=adapter)
        backend.load_error = exc
        return backend
    except BaseException:
        supervisor.release()
        raise
    return make_proxy(supervisor, spec, description, adapter=adapter)


def _for_adapter(spec: ModelSpec, adapter: Path, count: int) -> ModelSpec:
    """``spec`` with ``adapter``, journaling to a file of that adapter's own when several."""
    options = spec.worker
    if options.journal is not None and count > 1 and not options.journal.is_dir():
        digest = hashlib.sha256(str(adapter).encode()).hexdigest()[:12]
        journal = options.journal.with_name(
            f"{options.journal.stem}-{digest}{options.journal.suffix}"
        )
        spec = replace(spec, worker=replace(options, journal=journal))
    return spec.with_adapter(adapter)


def spawn(spec: ModelSpec) -> RemoteBackend:
    """Start the worker for ``spec``, Load the spec into it, return the proxy.

    The worker runs under a ``Supervisor`` that restarts it and retries
    calls according to ``spec.worker.recovery``. Unlike ``build`` this applies
    no dispatch rules, so it also starts the dummy worker and any worker
    command (``spec.worker.command``). ``spec.worker`` says where
    (``launcher_for``).
    """
    refuse_inside_worker("swayhost.build/spawn")
    return launch(spec, launcher_for(spec))


def launcher_for(spec: ModelSpec) -> Launcher:
    """Where ``spec.worker`` says its worker runs: a child process, detached, or in Ray."""
    options = spec.worker
    if options.launcher == "ray":
        from swayhost.ray.endpoint import RayLauncher  # ray is heavy: only a Ray user imports it

        return RayLauncher(spec)
    if options.detach:
        return DetachedLauncher.for_spec(spec)
    recovery = options.recovery
    if recovery.fork_template and recovery.max_restarts > 0:
        return ForkingLauncher(spec)
    return LocalLauncher(spec)


class TwoWorkerDifferential:
    """Base and ft from two workers, as sway's ``TwoModelDifferential`` does in process."""

    def __init__(self, base: RemoteBackend, ft: RemoteBackend) -> None:
        self._base = base
        self._ft = ft
        self.safe_for_concurrent_views: bool = bool(
            base.safe_for_concurrent_views and ft.safe_for_concurrent_views
        )

    @contextmanager
    def as_base(self) -> Iterator[RemoteView]:
        with self._base.as_base() as view:
            yield view

    @contextmanager
    def as_finetuned(self) -> Iterator[RemoteView]:
        with self._ft.as_finetuned() as view:
            yield view

    def preflight_finite_check(self) -> tuple[bool, str]:
        """Preflight the ft side, where a broken adapter would show."""
        check = getattr(self._ft, "preflight_finite_check", None)
        if not callable(check):
            return True, "ft backend does not support preflight"
        ok, reason = check()
        return bool(ok), str(reason)

    def close(self) -> None:
        for backend in (self._base, self._ft):
            backend.close()

    def __enter__(self) -> TwoWorkerDifferential:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BaseAndFt(Protocol):
    """sway's ``models`` section (or anything with a ``base`` and an ``ft`` spec)."""

    @property
    def base(self) -> object: ...

    @property
    def ft(self) -> object: ...


def build_two_separate(
    spec_models: BaseAndFt, *, worker: WorkerOptions | None = None
) -> TwoWorkerDifferential:
    """Base and ft on two workers, from an object with ``.base`` and ``.ft`` specs."""
    base_spec = coerce_spec(spec_models.base, worker)
    ft_spec = coerce_spec(spec_models.ft, worker)
    if base_spec.kind == "hf" and base_spec.adapter is None:
        raise spec_validation_error(
            "defaults.differential=false with an HF base requires the base "
            "ModelSpec to carry an adapter path too (the HF backend loads "
            "via PEFT). Either set `models.base.adapter` explicitly, or "
            "switch to `defaults.differential: true` to use the single-load "
            "toggle path."
        )
    base = build(base_spec)
    try:
        ft = build(ft_spec)
    except BaseException:
        base.close()
        raise
    return TwoWorkerDifferential(base=base, ft=ft)
