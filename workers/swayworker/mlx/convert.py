"""PEFT LoRA weights -> MLX layout, cached on disk by the adapter's content hash.

PEFT stores ``lora_A`` as ``(r, in)`` and ``lora_B`` as ``(out, r)`` (torch
``Linear`` weights, applied as ``x @ A.T @ B.T``). The runtime LoRA keeps
them as ``a = A.T`` ``(in, r)`` and ``b = B.T`` ``(r, out)`` so a forward
pass is ``x @ a @ b`` on contiguous arrays, keyed by module path. An
embedding LoRA (``lora_embedding_A`` ``(r, vocab)``, ``lora_embedding_B``
``(dim, r)``) takes the same transposes, so its delta is ``a[ids] @ b``.
DoRA magnitudes, ``modules_to_save`` copies and saved base weights are
kept as they are. The
converted file is written once per distinct adapter content (the key is a
sha256 of its config and weights, so an edited adapter never hits a stale
entry) and reused by every later worker, including one restarted after a
crash. An entry is built in a staging folder and renamed into place with
its marker, so a half-written entry never looks complete.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlx.core as mx

from swayworker.mlx.adapter import AdapterPlan, ModuleTensor, UnsupportedAdapter, content_hash
from swayworker.xdg import project_dir

log = logging.getLogger("swayworker")

FORMAT_VERSION = 2
"""2: per-module arrays of every kind (magnitudes, saved modules, base weights)."""
ARRAYS_FILE = "lora.safetensors"
MARKER = "COMPLETE.json"

LoraArrays = dict[str, tuple[Any, Any]]
"""Module path -> (a ``(in, r)``, b ``(r, out)``) MLX arrays."""


@dataclass
class Converted:
    """An adapter's arrays in MLX layout, by the module path PEFT names."""

    lora: LoraArrays
    magnitudes: dict[str, Any] = field(default_factory=dict)
    saved: dict[tuple[str, str], Any] = field(default_factory=dict)
    """(module path, parameter) -> the trained ``modules_to_save`` tensor."""
    base_weights: dict[tuple[str, str], Any] = field(default_factory=dict)


def default_cache_dir() -> Path:
    return project_dir("XDG_CACHE_HOME") / "mlx-adapters"


def load_converted(plan: AdapterPlan, cache_dir: Path) -> Converted:
    """The adapter in MLX layout, from the cache when this content was converted before."""
    entry = cache_dir / f"v{FORMAT_VERSION}" / content_hash(plan)
    if (entry / MARKER).is_file():
        log.info("adapter %s: converted copy found in %s", plan.adapter_dir, entry)
        return _split(mx.load(str(entry / ARRAYS_FILE)), plan)
    arrays = _convert(plan)
    _publish(arrays, plan, entry)
    log.info("adapter %s: converted to MLX layout, cached in %s", plan.adapter_dir, entry)
    return _split(arrays, plan)


def _convert(plan: AdapterPlan) -> dict[str, Any]:
    raw = mx.load(str(plan.weights_path))
    arrays: dict[str, Any] = {}
    for module in plan.modules:
        a, b = raw[module.a_key], raw[module.b_key]
        if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[1]:
            raise UnsupportedAdapter(
                f"{module.path}: LoRA shapes A{tuple(a.shape)} and B{tuple(b.shape)} do not "
                "form a LoRA (expected A (r, in) and B (out, r))"
            )
        arrays[f"{module.path}.a"] = mx.contiguous(a.T)
        arrays[f"{module.path}.b"] = mx.contiguous(b.T)
        if module.magnitude_key is not None:
            arrays[f"{module.path}.magnitude"] = raw[module.magnitude_key].reshape(-1)
    for prefix, tensors in (("saved", plan.saved), ("base", plan.base_weights)):
        for tensor in tensors:
            arrays[_tensor_key(prefix, tensor)] = raw[tensor.key]
    mx.eval(list(arrays.values()))
    return arrays


def _tensor_key(prefix: str, tensor: ModuleTensor) -> str:
    return f"{prefix}:{tensor.path}:{tensor.param}"


def _split(arrays: dict[str, Any], plan: AdapterPlan) -> Converted:
    return Converted(
        lora={m.path: (arrays[f"{m.path}.a"], arrays[f"{m.path}.b"]) for m in plan.modules},
        magnitudes={m.path: arrays[f"{m.path}.magnitude"] for m in plan.modules if m.magnitude_key},
        saved={(t.path, t.param): arrays[_tensor_key("saved", t)] for t in plan.saved},
        base_weights={(t.path, t.param): arrays[_tensor_key("base", t)] for t in plan.base_weights},
    )


def _publish(arrays: dict[str, Any], plan: AdapterPlan, entry: Path) -> None:
    """Write ``entry`` atomically; losing a race to an identical entry is fine."""
    entry.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=entry.parent))
    try:
        mx.save_safetensors(str(staging / ARRAYS_FILE), arrays)
        marker = {"format": FORMAT_VERSION, "source": str(plan.adapter_dir)}
        (staging / MARKER).write_text(json.dumps(marker) + "\n")
        try:
            os.rename(staging, entry)
        except OSError:
            if not (entry / MARKER).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
