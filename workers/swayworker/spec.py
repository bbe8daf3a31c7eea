"""The model spec a worker receives on Load, as the object backends expect.

Backends written for sway are constructed as ``Cls(base_spec=ModelSpec,
adapter_path=Path|None)``; inside a worker that has dlm-sway installed the
spec is sway's own pydantic ``ModelSpec``, elsewhere a frozen dataclass with
the same fields.
"""

from __future__ import annotations

import json
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


def check_model_files(base: str, adapter: Path) -> None:
    """Refuse, naming the file, a base path that does not exist or a corrupt adapter config.

    In process both fail deep in the hub or in ``json``: a missing base folder
    as ``OSError: Repo id must be in the form 'repo_name'...`` and a broken
    ``adapter_config.json`` as ``Expecting value: line 2 column 1``, neither
    naming the path. The types stay sway's (``OSError``, ``ValueError``); the
    words say what is wrong where.
    """
    if _is_local_path(base) and not Path(base).expanduser().exists():
        raise OSError(
            f"base model {base!r} does not exist: there is no such folder. Give the folder"
            " of a saved model, or a Hugging Face repo id such as 'org/name'"
        )
    config = adapter / "adapter_config.json"
    if not config.is_file():
        return
    try:
        json.loads(config.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(
            f"adapter config {config} is not valid JSON ({exc}); fix it, or save the"
            " adapter again (PEFT's save_pretrained writes it)"
        ) from None


def _is_local_path(base: str) -> bool:
    """Whether ``base`` can only be a folder, never a hub repo id ('name' or 'org/name')."""
    return base.startswith(("/", "./", "../", "~")) or base.count("/") > 1
