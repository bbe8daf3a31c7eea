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

from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from swayhost import config
from swayhost.build import build
from swayhost.console import step
from swayhost.errors import (
    CacheError,
    ConfigError,
    EnvError,
    JournalError,
    spec_validation_error,
)
from swayhost.proxy import RemoteBackend, RemoteView
from swayhost.spec import ModelSpec
from swayhost.stats import BackendStats

if TYPE_CHECKING:
    from dlm_sway.core.model import ModelSpec as SwayModelSpec

OPTIONAL_METHODS = ("as_scaled_adapter", "as_null_adapter", "preflight_finite_check")
"""The methods of sway's optional protocols (scalable, null-calibrated, preflight)."""


class HostBackend:
    """A sway differential backend served by a worker of kind ``worker_kind``.

    sway tests its optional protocols with ``isinstance`` (attribute presence),
    so this object must *lack* whatever the worker cannot serve: the optional
    methods are bound per instance, from the proxy, only when the worker
    advertises them. Instance attributes are seen both by Python 3.11's
    protocol check (``hasattr``) and by 3.12's (``getattr_static``).
    """

    worker_kind: ClassVar[str]

    def __init__(self, base_spec: SwayModelSpec, adapter_path: Path | None = None) -> None:
        self._backend = _build_remote(self.worker_kind, base_spec, adapter_path)
        self.safe_for_concurrent_views: bool = self._backend.safe_for_concurrent_views
        self._inst = self._backend._inst  # sway's runner reads report's backend_stats from it
        for name in OPTIONAL_METHODS:
            method = getattr(self._backend, name, None)
            if method is not None:
                setattr(self, name, method)

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
        """Stop the worker; sway's CLI calls this when the suite ends. Idempotent."""
        self._backend.close()


class HF(HostBackend):
    """``entry_point: swayhost.sway:HF``: transformers + PEFT in the ``hf`` worker."""

    worker_kind = "hf"


class MLX(HostBackend):
    """``entry_point: swayhost.sway:MLX``: MLX in the ``mlx`` worker."""

    worker_kind = "mlx"


class API(HostBackend):
    """``entry_point: swayhost.sway:API``: an OpenAI-compatible server via the ``api`` worker."""

    worker_kind = "api"


def _build_remote(kind: str, base_spec: Any, adapter_path: Path | None) -> RemoteBackend:
    """Start the worker for sway's ``kind: custom`` spec, as if it were ``kind``.

    sway's build errors (a missing adapter, a missing endpoint) come from
    ``build`` as sway's ``SpecValidationError``; a bad host config, or a
    provisioned env that cannot be built, or a journal kept for another model,
    becomes one too, so ``sway run``
    prints it as a spec error (naming the env and the fix) rather than a traceback.
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
    try:
        # A first run provisions the env and (mlx) converts the adapter: seconds to minutes
        # that sway's own output would leave silent.
        with step(f"starting the {kind} worker and loading {base_spec.base}"):
            return build(spec)
    except (CacheError, EnvError, JournalError) as exc:
        raise spec_validation_error(str(exc)) from exc
