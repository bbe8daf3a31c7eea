"""What transformers 5 saves differently from what mlx-lm 0.32 reads: one table per architecture.

A model saved by transformers 5 does not always load, or worse loads
*wrongly*, in mlx-lm:

* rope settings moved into ``rope_parameters`` (``{"rope_theta": ...,
  "rope_type": ..., "partial_rotary_factor": ...}``) instead of the
  top-level ``rope_theta`` / ``rope_scaling`` / ``partial_rotary_factor``
  mlx-lm reads; mlx-lm then falls back to its default theta (10000)
  without a word, which is right only by luck;
* GPT-2 no longer writes ``n_ctx`` (mlx-lm's ``ModelArgs`` requires it; it
  is the context length, ``n_positions``);
* GPT-2's modules live under ``transformer.`` in transformers (in the saved
  weights and in a PEFT adapter's tensor names), while mlx-lm's GPT-2 reads
  weights named ``h.*`` and keeps its modules under ``model.``.

``SHIMS`` holds, per ``model_type``, the config fixes (each a function of
the saved config returning the fields to override), the weight-name renames
and the adapter module-path renames. The loader passes ``overrides`` to
mlx-lm's ``model_config``, renames weights before mlx-lm's own ``sanitize``
and maps adapter paths through ``module_path``. A ``model_type`` not in
the table gets ``DEFAULT`` (the rope lift every transformers-5 decoder
needs); each listed one is tested against the HF worker by the model
matrix (``tests/test_model_matrix.py``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Config = dict[str, Any]
Fix = Callable[[Config], Config]


def rope_from_parameters(config: Config) -> Config:
    """``rope_theta``, ``partial_rotary_factor`` and ``rope_scaling`` lifted out of
    ``rope_parameters`` where the top level lacks them."""
    rope = config.get("rope_parameters")
    if not isinstance(rope, dict):
        return {}
    overrides: Config = {}
    for key in ("rope_theta", "partial_rotary_factor"):
        if config.get(key) is None and key in rope:
            overrides[key] = float(rope[key])
    scaling = {k: v for k, v in rope.items() if k not in ("rope_theta", "partial_rotary_factor")}
    rope_type = scaling.get("rope_type", "default")
    if config.get("rope_scaling") is None and rope_type != "default":
        overrides["rope_scaling"] = scaling | {"type": rope_type}
    return overrides


def n_ctx_from_n_positions(config: Config) -> Config:
    """GPT-2's ``n_ctx`` (dropped by transformers 5) is its context length, ``n_positions``."""
    if "n_ctx" in config or "n_positions" not in config:
        return {}
    return {"n_ctx": int(config["n_positions"])}


@dataclass(frozen=True, slots=True)
class Shim:
    """One architecture's fixes: config fields to derive, weight and module renames."""

    config: tuple[Fix, ...] = (rope_from_parameters,)
    renames: tuple[tuple[str, str], ...] = ()
    """PEFT module path prefix -> mlx-lm module path prefix."""
    weight_renames: tuple[tuple[str, str], ...] = ()
    """Saved weight name prefix -> the name mlx-lm's ``sanitize`` expects."""
    embedding: str = "model.embed_tokens"
    """The mlx-lm path of the input embedding (a tied model's head)."""

    def overrides(self, config: Config) -> Config:
        out: Config = {}
        for fix in self.config:
            out.update(fix(config))
        return out

    def module_path(self, peft_path: str) -> str:
        """Where the module a PEFT adapter names as ``peft_path`` lives in the mlx-lm model."""
        return _rename(peft_path, self.renames)

    def weight_name(self, saved: str) -> str:
        """The name mlx-lm's model expects for the weight saved as ``saved``."""
        return _rename(saved, self.weight_renames)


def _rename(name: str, renames: tuple[tuple[str, str], ...]) -> str:
    for old, new in renames:
        if name.startswith(old):
            return new + name[len(old) :]
    return name


DEFAULT = Shim()

SHIMS: dict[str, Shim] = {
    "llama": Shim(),
    "mistral": Shim(),
    "qwen2": Shim(),
    "phi3": Shim(),
    "gemma2": Shim(),
    "gpt2": Shim(
        config=(n_ctx_from_n_positions,),
        renames=(("transformer.", "model."),),
        weight_renames=(("transformer.", ""),),
        embedding="model.wte",
    ),
}


def read_config(base_dir: Path) -> Config:
    """The base's ``config.json`` (``{}`` when absent: mlx-lm then reports it)."""
    path = base_dir / "config.json"
    if not path.is_file():
        return {}
    loaded = json.loads(path.read_text())
    return loaded if isinstance(loaded, dict) else {}


def shim_for(config: Config) -> Shim:
    return SHIMS.get(str(config.get("model_type", "")), DEFAULT)


def config_overrides(base_dir: Path) -> Config:
    """The fields ``mlx_lm.load(model_config=...)`` must override for this base."""
    config = read_config(base_dir)
    return shim_for(config).overrides(config)
