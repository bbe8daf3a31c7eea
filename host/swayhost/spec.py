"""What to run and where: sway's ``ModelSpec`` fields plus the worker's options.

``swayhost.ModelSpec`` carries exactly sway's fields so a spec means the
same thing in both places, plus ``worker``: how and where the worker process
runs. A ``dlm_sway`` ``ModelSpec`` is accepted as is (``coerce_spec``).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from swayplugin.v1 import backend_pb2 as pb

from swayhost.envs.spec import EnvSpec
from swayhost.policy import RecoveryPolicy

KINDS = ("hf", "mlx", "api", "dummy", "custom")


@dataclass(frozen=True)
class WorkerOptions:
    """How a worker process is started, kept alive and journaled.

    ``command`` (any argv, any language) wins over ``python``; without
    either the worker runs as ``<current interpreter> -m swayworker.<kind>``.
    ``environment`` declares a provisioned env instead of ``python``: the
    launcher builds it (once, cached) and runs the worker with its interpreter.
    ``recovery`` says how crashes, hangs and poison inputs are handled
    (``RecoveryPolicy.never()`` turns recovery off); ``journal`` names an
    SQLite file that keeps every result so a rerun resumes (off when None).
    """

    python: str | None = None
    environment: EnvSpec | None = None
    command: tuple[str, ...] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    startup_timeout: float = 120.0
    options: Mapping[str, str] = field(default_factory=dict)
    name: str | None = None
    recovery: RecoveryPolicy = field(default_factory=RecoveryPolicy)
    journal: Path | None = None

    def __post_init__(self) -> None:
        if self.journal is not None:
            object.__setattr__(self, "journal", Path(self.journal).expanduser().resolve())

    def argv(self, kind: str) -> list[str]:
        if self.command:
            return list(self.command)
        return [self.python or sys.executable, "-m", f"swayworker.{kind}"]


@dataclass(frozen=True)
class ModelSpec:
    """sway's ``ModelSpec`` fields, plus ``worker`` (where and how it runs)."""

    base: str
    kind: str = "hf"
    adapter: Path | None = None
    dtype: str = "auto"
    device: str = "auto"
    trust_remote_code: bool = False
    entry_point: str | None = None
    endpoint: str | None = None
    worker: WorkerOptions = field(default_factory=WorkerOptions)

    def __post_init__(self) -> None:
        if self.adapter is not None:
            object.__setattr__(self, "adapter", Path(self.adapter).expanduser().resolve())

    def with_adapter(self, adapter: Path | None) -> ModelSpec:
        return replace(self, adapter=adapter)

    def to_proto(self) -> pb.ModelSpec:
        return pb.ModelSpec(
            kind=self.kind,
            base=self.base,
            adapter=str(self.adapter) if self.adapter is not None else "",
            dtype=self.dtype,
            device=self.device,
            trust_remote_code=self.trust_remote_code,
            entry_point=self.entry_point or "",
            endpoint=self.endpoint or "",
            options=dict(self.worker.options),
        )


_SWAY_FIELDS = (
    "kind",
    "base",
    "adapter",
    "dtype",
    "device",
    "trust_remote_code",
    "entry_point",
    "endpoint",
)


def coerce_spec(spec: Any, worker: WorkerOptions | None = None) -> ModelSpec:
    """A ``swayhost.ModelSpec`` from ours, sway's pydantic one, or a mapping."""
    if isinstance(spec, ModelSpec):
        return spec if worker is None else replace(spec, worker=worker)
    if isinstance(spec, Mapping):
        values = {k: spec[k] for k in _SWAY_FIELDS if k in spec}
    else:
        values = {k: getattr(spec, k) for k in _SWAY_FIELDS if hasattr(spec, k)}
    if "base" not in values:
        raise TypeError(f"expected a ModelSpec (with at least 'base'), got {type(spec).__name__}")
    return ModelSpec(**values, worker=worker or WorkerOptions())
