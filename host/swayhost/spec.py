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
from typing import TYPE_CHECKING

from swayplugin.v1 import backend_pb2 as pb

from swayhost.arguments import integer, real, text
from swayhost.policy import RecoveryPolicy
from swayhost.ray.options import RayOptions

if TYPE_CHECKING:
    from swayhost.envs.spec import EnvSpec  # its requirement parsing loads packaging

KINDS = ("hf", "mlx", "api", "dummy", "custom")
LAUNCHERS = ("local", "ray")
DEFAULT_CACHE_BYTES = 64 << 20
DEFAULT_BATCH_WINDOW_S = 0.002
MAX_BATCH_WINDOW_S = 0.1
"""A longer wait would cost a caller more than the batch could save it."""


def is_batch_window(value: object) -> bool:
    """Whether ``value`` is a batch window in seconds: the one place its range is written."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and 0.0 <= value <= MAX_BATCH_WINDOW_S
    )


class OptionsConflict(ValueError):
    """Two ``WorkerOptions`` that cannot go together.

    The message speaks of the Python fields; ``keys`` and ``fix`` say the
    same in the config file's terms, so ``swayhost.config`` reports the rule
    without restating it.
    """

    def __init__(self, message: str, *, keys: str, fix: str) -> None:
        super().__init__(message)
        self.keys = keys
        self.fix = fix


@dataclass(frozen=True)
class WorkerOptions:
    """How a worker process is started, kept alive and journaled.

    ``command`` (any argv, any language) wins over ``python``; without
    either the worker runs as ``<current interpreter> -m swayworker.<kind>``.
    ``environment`` declares a provisioned env instead of ``python``: the
    launcher builds it (once, cached) and runs the worker with its interpreter.
    ``recovery`` says how crashes, hangs and poison inputs are handled
    (``RecoveryPolicy.never()`` turns recovery off); ``journal`` names an
    SQLite file that keeps every result so a rerun resumes (off when None),
    or an existing folder where each backend keeps a file of its own.

    ``detach=True`` starts the worker to outlive this host, recorded under
    ``name`` (default: the kind): a later host, or the same code after a
    notebook restart, finds it running and attaches instead of loading the
    model again (``swayhost.reattach(name)`` attaches without a spec). Closing
    the backend leaves it running; ``swayhost detached stop NAME`` stops it.
    ``launcher="ray"`` places the worker in a Ray actor (``ray`` says where).

    ``cache_bytes`` bounds the in-memory LRU of results (0 turns it off): a
    repeated request is answered without a round trip. ``batch_window_s``
    is how long a batch leader waits for concurrent callers to join it
    (``swayhost.coalesce``); ``dynamic_batching=False`` sends every call on
    its own, so results never depend on what other threads were scoring.

    ``background_start`` is for sway's entry points (``swayhost.sway:HF``):
    sway's build returns while the worker starts, and the first call waits
    for it (``swayhost.starting``); ``False`` makes the build wait, so a load
    error is raised by the build itself. ``swayhost.build`` always waits.
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
    detach: bool = False
    launcher: str = "local"
    ray: RayOptions = field(default_factory=RayOptions)
    cache_bytes: int = DEFAULT_CACHE_BYTES
    dynamic_batching: bool = True
    batch_window_s: float = DEFAULT_BATCH_WINDOW_S
    background_start: bool = True

    def __post_init__(self) -> None:
        if self.launcher not in LAUNCHERS:
            raise ValueError(
                f"WorkerOptions.launcher must be one of {', '.join(LAUNCHERS)}, "
                f"got {self.launcher!r}"
            )
        if self.detach and (self.launcher != "local" or self.recovery.standby):
            raise OptionsConflict(
                "WorkerOptions.detach is for a local worker without a standby: a Ray worker "
                "lives as long as its actor, and a detached worker is not this host's to replace",
                keys="detach: true with launcher: ray or recovery.standby: true",
                fix="a detached worker runs locally without a standby: "
                "drop detach, or drop the other",
            )
        if real("WorkerOptions.startup_timeout", self.startup_timeout) <= 0:
            raise ValueError(
                f"WorkerOptions.startup_timeout must be > 0 seconds, got {self.startup_timeout!r}"
            )
        if integer("WorkerOptions.cache_bytes", self.cache_bytes) < 0:
            raise ValueError(f"WorkerOptions.cache_bytes must be >= 0, got {self.cache_bytes}")
        if not is_batch_window(self.batch_window_s):
            raise ValueError(
                f"WorkerOptions.batch_window_s must be within [0, {MAX_BATCH_WINDOW_S:g}] "
                f"seconds, got {self.batch_window_s!r}"
            )
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
        for name in ("base", "kind", "dtype", "device"):  # as sway's ModelSpec: str, no coercion
            text(f"ModelSpec.{name}", getattr(self, name), error=ValueError)
        for name in ("entry_point", "endpoint"):
            if getattr(self, name) is not None:
                text(f"ModelSpec.{name}", getattr(self, name), error=ValueError)
        if self.adapter is not None:
            object.__setattr__(self, "adapter", Path(self.adapter).expanduser().resolve())

    def with_adapter(self, adapter: Path | None) -> ModelSpec:
        return replace(self, adapter=adapter)

    @classmethod
    def from_proto(cls, msg: pb.ModelSpec, worker: WorkerOptions) -> ModelSpec:
        """The spec a running worker reports it serves, with this host's ``worker`` options.

        Kept verbatim, so Loading it again changes nothing: its adapter is a
        path on the worker's machine, which resolving here could rewrite.
        """
        spec = cls(
            base=msg.base,
            kind=msg.kind or "hf",
            dtype=msg.dtype or "auto",
            device=msg.device or "auto",
            trust_remote_code=msg.trust_remote_code,
            entry_point=msg.entry_point or None,
            endpoint=msg.endpoint or None,
            worker=replace(worker, options=dict(msg.options)),
        )
        if msg.adapter:
            object.__setattr__(spec, "adapter", Path(msg.adapter))
        return spec

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


def base_key(spec: pb.ModelSpec) -> bytes:
    """What a worker holding ``spec`` keeps when only the adapter changes: all but the adapter.

    Two specs with equal keys name the same base (kind, base, dtype, device,
    entry point, endpoint, options), so a worker that holds one can serve
    the other by Loading only its adapter.
    """
    base = pb.ModelSpec()
    base.CopyFrom(spec)
    base.ClearField("adapter")
    return base.SerializeToString(deterministic=True)


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


def coerce_spec(spec: object, worker: WorkerOptions | None = None) -> ModelSpec:
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
