"""sway custom backends that run out of process: ``entry_point: swayhost.sway:HF``.

In ``sway.yaml`` a model of ``kind: custom`` with ``entry_point:
swayhost.sway:HF`` (or ``MLX``, ``API``) is built by sway's own custom
loader, which calls ``HF(base_spec=..., adapter_path=...)``. The class starts
the worker of its kind through ``swayhost.build``, so the model is loaded in
the worker's interpreter and environment (from the host config file, see
``swayhost.config``), never in sway's process, and delegates sway's protocols
to the proxy.

sway's CLI closes the backend in a ``finally`` after the suite, and ``close``
stops the worker; the host's atexit hook covers a process that ends without
closing (an exception in a caller that skipped ``close``).
"""

from __future__ import annotations

import functools
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from swayhost import config
from swayhost.build import build, checked
from swayhost.console import step
from swayhost.errors import (
    CacheError,
    ConfigError,
    EnvError,
    JournalError,
    UnsupportedCapabilityError,
    spec_validation_error,
)
from swayhost.proxy import RemoteBackend, RemoteView
from swayhost.spec import ModelSpec
from swayhost.starting import StartingBackend
from swayhost.stats import BackendStats, SwayInstrumentation

if TYPE_CHECKING:
    from dlm_sway.core.model import ModelSpec as SwayModelSpec

OPTIONAL_METHODS = ("as_scaled_adapter", "as_null_adapter", "preflight_finite_check")
"""The methods of sway's optional protocols (scalable, null-calibrated, preflight)."""

BUILT_IN_METHODS: dict[str, tuple[str, ...]] = {
    "hf": OPTIONAL_METHODS,
    "mlx": OPTIONAL_METHODS,
    "api": ("preflight_finite_check",),
}
"""The optional methods each built-in worker serves: its backend class's, whatever
the model (a test checks each against the real worker). They let a backend
started in the background answer sway's protocol checks before its worker is up."""


class HostBackend:
    """A sway differential backend served by a worker of kind ``worker_kind``.

    sway tests its optional protocols with ``isinstance`` (attribute presence)
    as soon as the backend is built, so this object must *lack* whatever the
    worker cannot serve: the optional methods are bound per instance.
    Instance attributes are seen both by Python 3.11's protocol check
    (``hasattr``) and by 3.12's (``getattr_static``).

    The worker starts in the background (``WorkerOptions.background_start``,
    on by default): the constructor returns at once, sway goes on with its own
    start-up (seeding imports torch), and the first call that needs the
    worker waits for it (``swayhost.starting``). The optional methods are then
    those the built-in worker of this kind serves; with the option off the
    constructor waits and binds exactly what the loaded worker advertises.
    """

    worker_kind: ClassVar[str]

    def __init__(self, base_spec: SwayModelSpec, adapter_path: Path | None = None) -> None:
        spec = _remote_spec(self.worker_kind, base_spec, adapter_path)
        self._starting = StartingBackend(lambda: _start(spec), spec.kind)
        expected = BUILT_IN_METHODS.get(spec.kind)
        if not spec.worker.background_start or expected is None:
            expected = tuple(n for n in OPTIONAL_METHODS if hasattr(self._backend, n))
        for name in expected:
            setattr(self, name, functools.partial(self._optional, name))

    @property
    def _backend(self) -> RemoteBackend:
        """The started backend: waits while the worker starts; raises what the start raised."""
        return self._starting.result()

    def _optional(self, name: str, *args: Any, **kwargs: Any) -> Any:
        """Call optional method ``name`` of the started backend, which should serve it."""
        backend = self._backend
        method = getattr(backend, name, None)
        if method is None:  # a worker that is not the built-in one this kind promised
            raise UnsupportedCapabilityError(
                f"worker {backend.name!r} ({backend.description.worker_kind}) does not offer "
                f"{name}, which a built-in {self.worker_kind} worker does; set "
                f"background_start: false for it in the host config, so sway sees "
                f"exactly what it serves",
                worker=backend.name,
            )
        return method(*args, **kwargs)

    @property
    def safe_for_concurrent_views(self) -> bool:
        return self._backend.safe_for_concurrent_views

    @property
    def _inst(self) -> SwayInstrumentation:
        """sway's runner reads a report's ``backend_stats`` from it."""
        return self._backend._inst

    def as_base(self) -> AbstractContextManager[RemoteView]:
        view: AbstractContextManager[RemoteView] = self._backend.as_base()
        return view

    def as_finetuned(self) -> AbstractContextManager[RemoteView]:
        view: AbstractContextManager[RemoteView] = self._backend.as_finetuned()
        return view

    def cache_identity(self) -> str:
        """The worker's identity (sway's format), so sway's null-stats cache is shared."""
        return self._backend.cache_identity()

    def stats(self) -> BackendStats:
        """The worker's counters (calls, cache, batching, crashes): ``RemoteBackend.stats``."""
        return self._backend.stats()

    def close(self) -> None:
        """Stop the worker (once started); sway's CLI calls this when the suite ends. Idempotent."""
        self._starting.close()


class HF(HostBackend):
    """``entry_point: swayhost.sway:HF``: transformers + PEFT in the ``hf`` worker."""

    worker_kind = "hf"


class MLX(HostBackend):
    """``entry_point: swayhost.sway:MLX``: MLX in the ``mlx`` worker."""

    worker_kind = "mlx"


class API(HostBackend):
    """``entry_point: swayhost.sway:API``: an OpenAI-compatible server via the ``api`` worker."""

    worker_kind = "api"


def _remote_spec(kind: str, base_spec: Any, adapter_path: Path | None) -> ModelSpec:
    """The host's spec for sway's ``kind: custom`` spec, as if it were ``kind``.

    Everything the spec alone shows is checked here, before the constructor
    returns (sway's own words: a missing adapter, a missing endpoint), as is
    the host config: a bad one becomes sway's ``SpecValidationError`` too, so
    ``sway run`` prints it as a spec error (naming the file, key and fix).
    """
    try:
        worker = config.worker_options(kind)
    except ConfigError as exc:
        raise spec_validation_error(str(exc)) from exc
    spec = ModelSpec(
        kind=kind,
        base=base_spec.base,
        adapter=adapter_path,
        dtype=base_spec.dtype,
        device=base_spec.device,
        trust_remote_code=base_spec.trust_remote_code,
        endpoint=base_spec.endpoint,
        worker=worker,
    )
    return checked(spec)


def _start(spec: ModelSpec) -> RemoteBackend:
    """Start the worker and load the model; a provisioned env that cannot be
    built, or a journal kept for another model, is a spec error as sway's are."""
    try:
        # A first run provisions the env and (mlx) converts the adapter: seconds to minutes
        # that sway's own output would leave silent.
        with step(f"starting the {spec.kind} worker and loading {spec.base}"):
            return build(spec)
    except (CacheError, EnvError, JournalError) as exc:
        raise spec_validation_error(str(exc)) from exc
