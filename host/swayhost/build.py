"""``build`` and ``build_two_separate``: sway's dispatch, every backend out of process.

Mirrors sway's ``dlm_sway.backends.build``: the same dispatch on ``kind``
and the same validation errors (raised here, before any process starts,
where the spec alone shows the problem), but each backend is a worker
process behind a ``RemoteBackend`` proxy.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from swayworker.custom import check_entry_point

from swayhost.detached import DetachedLauncher
from swayhost.endpoint import Launcher
from swayhost.errors import WorkerBadSpec, as_host_error, spec_validation_error
from swayhost.launch import launch
from swayhost.local import ForkingLauncher, LocalLauncher
from swayhost.proxy import RemoteBackend, RemoteView
from swayhost.spec import ModelSpec, WorkerOptions, coerce_spec


def build(
    base_spec: object, *, adapter_path: Path | None = None, worker: WorkerOptions | None = None
) -> RemoteBackend:
    """Materialise a differential backend from a model spec, in a worker process.

    ``base_spec`` is a ``swayhost.ModelSpec`` or a ``dlm_sway`` ``ModelSpec``;
    ``worker`` overrides how the worker runs (interpreter, command, env).
    """
    spec = coerce_spec(base_spec, worker)
    effective_adapter = adapter_path if adapter_path is not None else spec.adapter
    spec = spec.with_adapter(effective_adapter)
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
    return spawn(spec)


def build_many(
    base_spec: object,
    adapters: Sequence[str | Path],
    *,
    worker: WorkerOptions | None = None,
) -> list[RemoteBackend]:
    """One backend per adapter of ``base_spec``, in the order of ``adapters``.

    Stand-in until the resident-adapter version lands (one worker holding
    the base once, each backend naming its adapter): this one builds a
    worker per adapter, so code written against the signature (the sweep,
    the Ray pool) works now and gets faster without a change.
    """
    built: list[RemoteBackend] = []
    try:
        for adapter in adapters:
            built.append(build(base_spec, adapter_path=Path(adapter), worker=worker))
    except BaseException:
        for backend in built:
            backend.close()
        raise
    return built


def spawn(spec: ModelSpec) -> RemoteBackend:
    """Start the worker for ``spec``, Load the spec into it, return the proxy.

    The worker runs under a ``Supervisor`` that restarts it and retries
    calls according to ``spec.worker.recovery``. Unlike ``build`` this applies
    no dispatch rules, so it also starts the dummy worker and any worker
    command (``spec.worker.command``). ``spec.worker`` says where
    (``launcher_for``).
    """
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
    if recovery.fork_template and not recovery.standby and recovery.max_restarts > 0:
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
