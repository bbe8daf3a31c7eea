"""The model spec a worker receives on Load, as the object backends expect.

Backends written for sway are constructed as ``Cls(base_spec=ModelSpec,
adapter_path=Path|None)``; inside a worker that has dlm-sway installed the
spec is sway's own pydantic ``ModelSpec``, elsewhere a frozen dataclass with
the same fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from swayplugin.v1 import backend_pb2 as pb


class ModelSpecLike(Protocol):
    """The fields of sway's ``ModelSpec`` the built-in model backends read."""

    @property
    def base(self) -> str: ...
    @property
    def dtype(self) -> str: ...
    @property
    def device(self) -> str: ...
    @property
    def trust_remote_code(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class WorkerModelSpec:
    """sway's ``ModelSpec`` fields, for environments without dlm-sway."""

    kind: str = "hf"
    base: str = ""
    adapter: Path | None = None
    dtype: str = "auto"
    device: str = "auto"
    trust_remote_code: bool = False
    entry_point: str | None = None
    endpoint: str | None = None
    options: dict[str, str] = field(default_factory=dict)


def adapter_path(msg: pb.ModelSpec) -> Path | None:
    return Path(msg.adapter).expanduser().resolve() if msg.adapter else None


def from_proto(msg: pb.ModelSpec) -> WorkerModelSpec:
    return WorkerModelSpec(
        kind=msg.kind or "hf",
        base=msg.base,
        adapter=adapter_path(msg),
        dtype=msg.dtype or "auto",
        device=msg.device or "auto",
        trust_remote_code=msg.trust_remote_code,
        entry_point=msg.entry_point or None,
        endpoint=msg.endpoint or None,
        options=dict(msg.options),
    )


def sway_spec(msg: pb.ModelSpec) -> Any:
    """sway's ``ModelSpec`` when dlm-sway is importable, else ``WorkerModelSpec``."""
    plain = from_proto(msg)
    try:
        from dlm_sway.core.model import ModelSpec
    except ImportError:
        return plain
    return ModelSpec(
        kind=plain.kind,
        base=plain.base,
        adapter=plain.adapter,
        dtype=plain.dtype,
        device=plain.device,
        trust_remote_code=plain.trust_remote_code,
        entry_point=plain.entry_point,
        endpoint=plain.endpoint,
    )


def tokenizer_source(base: str, adapter_path: Path) -> str:
    """sway's rule: the adapter's own tokenizer wins when it ships one, else the base's."""
    if (adapter_path / "tokenizer_config.json").exists():
        return str(adapter_path)
    return base
