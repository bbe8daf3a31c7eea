"""Read a PEFT LoRA adapter directory and decide whether MLX can run it.

Everything here is plain Python (no mlx), so the refusals are testable in
any environment and happen before a model is loaded. What a runtime LoRA
can reproduce is exactly ``W x + scaling * B (A x)`` on linear layers; a
PEFT feature that changes anything else (DoRA's magnitude vector, fully
trained ``modules_to_save`` copies, trained biases, embedding LoRA, a
bitsandbytes-quantized base) is refused with a message that names it,
instead of being silently dropped and scoring a different model.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swayworker.errors import BadSpec

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."
_A_SUFFIX = ".lora_A.weight"
_B_SUFFIX = ".lora_B.weight"


class UnsupportedAdapter(BadSpec):
    """The adapter uses a PEFT feature the MLX runtime LoRA cannot reproduce."""


@dataclass(frozen=True, slots=True)
class LoraModule:
    """One adapted linear layer: its path in the model and its tensor names."""

    path: str
    a_key: str
    b_key: str


@dataclass(frozen=True, slots=True)
class AdapterPlan:
    """What to load from a PEFT adapter, checked against what MLX can do."""

    adapter_dir: Path
    weights_path: Path
    rank: int
    scaling: float
    modules: tuple[LoraModule, ...]


def plan_adapter(adapter_dir: Path) -> AdapterPlan:
    """Validate ``adapter_dir`` (its config and the names in its weights file) into a plan."""
    config = read_config(adapter_dir)
    rank, scaling = _rank_and_scaling(config)
    weights = weights_path(adapter_dir)
    return AdapterPlan(
        adapter_dir=adapter_dir,
        weights_path=weights,
        rank=rank,
        scaling=scaling,
        modules=_modules(tensor_names(weights)),
    )


def read_config(adapter_dir: Path) -> dict[str, Any]:
    """``adapter_config.json``, refused unless it describes a plain LoRA."""
    path = adapter_dir / CONFIG_FILE
    if not path.is_file():
        raise UnsupportedAdapter(
            f"{adapter_dir} is not a PEFT adapter directory: it has no {CONFIG_FILE}"
        )
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UnsupportedAdapter(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise UnsupportedAdapter(f"{path} must hold a JSON object")
    _refuse_unsupported(config, path)
    return config


def weights_path(adapter_dir: Path) -> Path:
    """The adapter's safetensors file (a pickled ``.bin`` needs torch to read: refused)."""
    path = adapter_dir / WEIGHTS_FILE
    if path.is_file():
        return path
    if (adapter_dir / "adapter_model.bin").is_file():
        raise UnsupportedAdapter(
            f"{adapter_dir} holds adapter_model.bin (a torch pickle), which the MLX "
            "worker cannot read; re-save the adapter with safe_serialization=True"
        )
    raise UnsupportedAdapter(f"{adapter_dir} has no {WEIGHTS_FILE}")


def tensor_names(path: Path) -> list[str]:
    """Tensor names from a safetensors header (8-byte length, then JSON): no tensor is read."""
    try:
        with path.open("rb") as handle:
            size = struct.unpack("<Q", handle.read(8))[0]
            header = json.loads(handle.read(size))
    except (OSError, struct.error, ValueError) as exc:
        raise UnsupportedAdapter(f"{path} is not a readable safetensors file: {exc}") from exc
    return [name for name in header if name != "__metadata__"]


def check_base(base_dir: Path) -> None:
    """Refuse a bitsandbytes/GPTQ/AWQ-quantized base (a QLoRA setup).

    MLX cannot load those weights; a LoRA trained on one must be evaluated
    on the unquantized base (or on an MLX-quantized copy of it).
    """
    path = base_dir / "config.json"
    if not path.is_file():
        return  # mlx-lm reports a missing or unreadable model itself
    quant = json.loads(path.read_text()).get("quantization_config")
    if isinstance(quant, dict):
        method = quant.get("quant_method", "unknown")
        bits = "4-bit " if quant.get("load_in_4bit") else ""
        raise UnsupportedAdapter(
            f"the base model {base_dir} is {bits}{method}-quantized (a QLoRA setup); "
            "MLX cannot run those weights: point `base` at the unquantized model"
        )


def content_hash(plan: AdapterPlan) -> str:
    """sha256 of the adapter's config and weights: the conversion cache key."""
    digest = hashlib.sha256()
    for path in (plan.adapter_dir / CONFIG_FILE, plan.weights_path):
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _refuse_unsupported(config: dict[str, Any], path: Path) -> None:
    peft_type = str(config.get("peft_type", "LORA")).upper()
    if peft_type != "LORA":
        raise UnsupportedAdapter(f"{path}: only LoRA adapters convert to MLX, got {peft_type}")
    refusals = {
        "use_dora": "DoRA (use_dora) rescales weights by a learned magnitude",
        "modules_to_save": "modules_to_save replaces whole modules with trained copies",
        "layer_replication": "layer_replication changes the model's layer structure",
        "lora_bias": "lora_bias adds a trained bias to lora_B",
        "rank_pattern": "per-module ranks (rank_pattern)",
        "alpha_pattern": "per-module alphas (alpha_pattern)",
    }
    for key, why in refusals.items():
        if config.get(key):
            raise UnsupportedAdapter(
                f"{path}: {why}; the MLX worker cannot convert it (serve this adapter "
                "with the hf worker instead)"
            )
    if config.get("bias", "none") != "none":
        raise UnsupportedAdapter(
            f"{path}: bias={config['bias']!r} trains base-model biases; the MLX worker "
            "converts only LoRA A/B weights (serve this adapter with the hf worker)"
        )


def _rank_and_scaling(config: dict[str, Any]) -> tuple[int, float]:
    """PEFT's scaling: ``alpha / r``, or ``alpha / sqrt(r)`` with rsLoRA."""
    try:
        rank = int(config["r"])
        alpha = float(config.get("lora_alpha", rank))
    except (KeyError, TypeError, ValueError) as exc:
        raise UnsupportedAdapter(f"adapter config lacks a valid rank `r`: {exc}") from exc
    if rank < 1:
        raise UnsupportedAdapter(f"adapter rank r must be >= 1, got {rank}")
    divisor = math.sqrt(rank) if config.get("use_rslora") else rank
    return rank, alpha / divisor


def _modules(tensor_names: list[str]) -> tuple[LoraModule, ...]:
    """Pair every ``lora_A``/``lora_B`` tensor by module; refuse any other tensor."""
    a_keys: dict[str, str] = {}
    b_keys: dict[str, str] = {}
    others: list[str] = []
    for name in tensor_names:
        if name.endswith(_A_SUFFIX):
            a_keys[_module_path(name, _A_SUFFIX)] = name
        elif name.endswith(_B_SUFFIX):
            b_keys[_module_path(name, _B_SUFFIX)] = name
        else:
            others.append(name)
    if others:
        shown = ", ".join(sorted(others)[:3])
        raise UnsupportedAdapter(
            f"the adapter holds {len(others)} tensor(s) that are not LoRA A/B weights "
            f"(e.g. {shown}): DoRA magnitudes, embedding LoRA or saved modules cannot be "
            "converted to MLX"
        )
    unpaired = sorted(set(a_keys) ^ set(b_keys))
    if unpaired:
        raise UnsupportedAdapter(f"LoRA A and B weights are not paired for: {unpaired[:3]}")
    if not a_keys:
        raise UnsupportedAdapter("the adapter holds no LoRA weights")
    return tuple(LoraModule(path, a_keys[path], b_keys[path]) for path in sorted(a_keys))


def _module_path(name: str, suffix: str) -> str:
    """PEFT's saved name -> the module's path in the (mlx-lm) model tree."""
    return name.removeprefix(PEFT_PREFIX)[: -len(suffix)]
