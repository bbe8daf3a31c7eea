"""Read a PEFT LoRA adapter directory and decide whether MLX can run it.

Everything here is plain Python (no mlx), so the refusals are testable in
any environment and happen before a model is loaded. What the runtime LoRA
(``swayworker.mlx.lora``) reproduces, PEFT's forward pass for each:

* ``W x + scaling * B (A x)`` on linear layers, with a per-module scaling
  (``alpha / r``, or ``alpha / sqrt(r)`` with rsLoRA, where ``rank_pattern``
  and ``alpha_pattern`` pick a module's own ``r`` and ``alpha``);
* DoRA: the same delta, rescaled row-wise by ``magnitude / ||W + scaling B A||``;
* LoRA on an embedding: ``E[x] + scaling * A^T[x] B^T``;
* ``modules_to_save``: the trained copy of a module swapped in while the
  adapter is on (and the base's own while it is off);
* ``base_layer`` tensors PEFT saves next to a LoRA (an embedding LoRA's
  table, the biases ``bias="lora_only"`` trains), loaded into the base for
  every view, as PEFT does.

A PEFT feature that changes anything else (biases trained everywhere, layer
replication, trainable tokens, LoRA on bare parameters, a bitsandbytes
-quantized base) is refused with a message that names it, instead of being
silently dropped and scoring a different model.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swayworker.errors import BadSpec

CONFIG_FILE = "adapter_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
PEFT_PREFIX = "base_model.model."


class UnsupportedAdapter(BadSpec):
    """The adapter uses a PEFT feature the MLX runtime LoRA cannot reproduce."""


@dataclass(frozen=True, slots=True)
class LoraModule:
    """One adapted layer: its path in the model, its tensor names and its own scaling."""

    path: str
    a_key: str
    b_key: str
    scaling: float
    kind: str = "linear"
    """``linear`` (lora_A/lora_B) or ``embedding`` (lora_embedding_A/B)."""
    magnitude_key: str | None = None
    """DoRA's learned magnitude vector, when the adapter is DoRA."""


@dataclass(frozen=True, slots=True)
class ModuleTensor:
    """A whole tensor of a module: a ``modules_to_save`` copy or a saved base weight."""

    path: str
    param: str
    key: str


@dataclass(frozen=True, slots=True)
class AdapterPlan:
    """What to load from a PEFT adapter, checked against what MLX can do."""

    adapter_dir: Path
    weights_path: Path
    rank: int
    scaling: float
    """The default rank and scaling; each module carries its own."""
    modules: tuple[LoraModule, ...]
    saved: tuple[ModuleTensor, ...] = ()
    """``modules_to_save`` tensors: in use while the adapter is on."""
    base_weights: tuple[ModuleTensor, ...] = ()
    """``base_layer`` tensors PEFT saved with the adapter and loads into the base."""


def plan_adapter(adapter_dir: Path) -> AdapterPlan:
    """Validate ``adapter_dir`` (its config and the names in its weights file) into a plan."""
    config = read_config(adapter_dir)
    rank, scaling = _rank_and_scaling(config)
    weights = weights_path(adapter_dir)
    modules, saved, base_weights = _classify(tensor_names(weights), config)
    return AdapterPlan(
        adapter_dir=adapter_dir,
        weights_path=weights,
        rank=rank,
        scaling=scaling,
        modules=modules,
        saved=saved,
        base_weights=base_weights,
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
        "layer_replication": "layer_replication changes the model's layer structure",
        "lora_bias": "lora_bias adds a trained bias to lora_B",
        "trainable_token_indices": "trainable_token_indices trains single embedding rows",
        "target_parameters": "target_parameters puts LoRA on bare parameters (MoE experts)",
        "alora_invocation_tokens": "aLoRA (alora_invocation_tokens) activates per token",
    }
    for key, why in refusals.items():
        if config.get(key):
            raise UnsupportedAdapter(
                f"{path}: {why}; the MLX worker cannot convert it (serve this adapter "
                "with the hf worker instead)"
            )
    # bias="lora_only" trains the adapted layers' own biases; PEFT saves them as
    # ``*.base_layer.bias`` and loads them into the base for every view, and so
    # does the plan (base weights). bias="all" trains every bias in the model.
    if config.get("bias", "none") not in ("none", "lora_only"):
        raise UnsupportedAdapter(
            f"{path}: bias={config['bias']!r} trains every bias of the base model; the MLX "
            "worker converts only the adapted layers' (serve this adapter with the hf worker)"
        )


def _rank_and_scaling(config: dict[str, Any]) -> tuple[int, float]:
    """PEFT's default scaling: ``alpha / r``, or ``alpha / sqrt(r)`` with rsLoRA."""
    try:
        rank = int(config["r"])
        alpha = float(config.get("lora_alpha", rank))
    except (KeyError, TypeError, ValueError) as exc:
        raise UnsupportedAdapter(f"adapter config lacks a valid rank `r`: {exc}") from exc
    return rank, _scaling(rank, alpha, config)


def _scaling(rank: int, alpha: float, config: dict[str, Any]) -> float:
    if rank < 1:
        raise UnsupportedAdapter(f"adapter rank r must be >= 1, got {rank}")
    divisor = math.sqrt(rank) if config.get("use_rslora") else rank
    return alpha / divisor


def module_scaling(path: str, config: dict[str, Any]) -> float:
    """The scaling PEFT gives the module at ``path``: ``rank_pattern`` / ``alpha_pattern``
    entries override ``r`` / ``lora_alpha`` for the modules they match.

    A pattern key matches a module whose path ends with it at a dot
    boundary (a regex, as in PEFT's ``get_pattern_key``); the first
    matching key, in the order the config lists them, wins.
    """
    rank = int(_pattern_value(config.get("rank_pattern"), path, config["r"]))
    alpha = float(_pattern_value(config.get("alpha_pattern"), path, config.get("lora_alpha", rank)))
    return _scaling(rank, alpha, config)


def _pattern_value(pattern: Any, path: str, default: Any) -> Any:
    if not isinstance(pattern, dict):
        return default
    for key, value in pattern.items():
        if re.match(rf"(.*\.)?({key})$", path):
            return value
    return default


_SUFFIXES = {
    ".lora_A.weight": ("linear", "a"),
    ".lora_B.weight": ("linear", "b"),
    ".lora_embedding_A": ("embedding", "a"),
    ".lora_embedding_B": ("embedding", "b"),
    ".lora_magnitude_vector": ("linear", "magnitude"),
    ".lora_magnitude_vector.weight": ("linear", "magnitude"),
}


def _classify(
    names: list[str], config: dict[str, Any]
) -> tuple[tuple[LoraModule, ...], tuple[ModuleTensor, ...], tuple[ModuleTensor, ...]]:
    """Sort every tensor into LoRA parts, saved modules or base weights; refuse the rest."""
    parts: dict[str, dict[str, str]] = {}
    kinds: dict[str, str] = {}
    saved: list[ModuleTensor] = []
    base_weights: list[ModuleTensor] = []
    others: list[str] = []
    to_save = [str(m) for m in config.get("modules_to_save") or ()]
    for name in names:
        stripped = name.removeprefix(PEFT_PREFIX)
        suffix = next((s for s in _SUFFIXES if stripped.endswith(s)), None)
        if suffix is not None:
            kind, part = _SUFFIXES[suffix]
            path = stripped[: -len(suffix)]
            parts.setdefault(path, {})[part] = name
            if part != "magnitude":
                kinds[path] = kind
            continue
        module, _, param = stripped.rpartition(".")
        if module.endswith(".base_layer"):
            base_weights.append(ModuleTensor(module.removesuffix(".base_layer"), param, name))
        elif any(module == m or module.endswith("." + m) for m in to_save):
            saved.append(ModuleTensor(module, param, name))
        else:
            others.append(name)
    if others:
        shown = ", ".join(sorted(others)[:3])
        raise UnsupportedAdapter(
            f"the adapter holds {len(others)} tensor(s) the MLX worker does not know "
            f"(e.g. {shown}); serve this adapter with the hf worker instead"
        )
    modules = tuple(_module(path, parts[path], kinds.get(path), config) for path in sorted(parts))
    if not modules:
        raise UnsupportedAdapter("the adapter holds no LoRA weights")
    return modules, tuple(saved), tuple(base_weights)


def _module(
    path: str, part: dict[str, str], kind: str | None, config: dict[str, Any]
) -> LoraModule:
    if "a" not in part or "b" not in part or kind is None:
        raise UnsupportedAdapter(f"LoRA A and B weights are not paired for: {path}")
    magnitude = part.get("magnitude")
    if magnitude is not None and kind != "linear":
        raise UnsupportedAdapter(
            f"{path}: DoRA on an embedding; the MLX worker runs DoRA on linear layers only "
            "(serve this adapter with the hf worker instead)"
        )
    if magnitude is not None and not config.get("use_dora"):
        raise UnsupportedAdapter(
            f"{path}: the adapter holds a lora_magnitude_vector but its config does not say "
            "use_dora, so PEFT would ignore it; the MLX worker will not guess (serve this "
            "adapter with the hf worker instead)"
        )
    if config.get("use_dora") and magnitude is None:
        raise UnsupportedAdapter(
            f"{path}: the config says DoRA (use_dora) but the adapter holds no "
            "lora_magnitude_vector for this module; the MLX worker cannot run it "
            "(serve this adapter with the hf worker instead)"
        )
    return LoraModule(
        path=path,
        a_key=part["a"],
        b_key=part["b"],
        scaling=module_scaling(path, config),
        kind=kind,
        magnitude_key=magnitude,
    )
