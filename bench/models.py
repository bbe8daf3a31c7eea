"""The two models the bench runs: the tiny test model and a ~50M-parameter random Llama.

The tiny model (two layers, 64 wide) is where host overhead shows most: a
forward pass costs about as much as a round trip. The ~50M model is where
compute dominates, as it does with real models. Its weights are random (a
fixed seed), which is all a timing needs; its LoRA adapter is random too,
with nonzero ``lora_B``, so the fine-tuned view really differs from the base.

Both are built offline (no model hub): the tiny one by the worker package's
recipe, the ~50M one here, reusing the tiny model's tokenizer, and cached
under ``<host cache>/bench/``. A build is staged in a temporary folder and
renamed into place once complete, so an interrupted build is never reused.
"""

from __future__ import annotations

import json
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swayhost.paths import cache_dir
from swayworker.hf.tiny import build_once

RECIPE_VERSION = 2
"""Bump when the ~50M recipe changes, so stale cached builds are not reused."""
SEED = 50
MEDIUM = {
    "vocab_size": 32000,
    "hidden_size": 512,
    "intermediate_size": 1024,
    "num_hidden_layers": 8,
    "num_attention_heads": 8,
    "num_key_value_heads": 8,
    "max_position_embeddings": 1024,
}
"""About 54M parameters: 33M in the (untied) embeddings and LM head, 21M in eight blocks.

A Llama-sized vocabulary on purpose: the full-vocabulary ``next_token_dist``
then returns what a real model's would (32000 log-probs per call).
"""
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


@dataclass(frozen=True)
class BenchModel:
    """One model on disk, and the facts the report and the sweeps need."""

    name: str
    """``tiny`` or ``50m``: the key of its plan and of its rows in the report."""
    base_dir: Path
    adapter_dir: Path
    params: int
    vocab_size: int
    max_tokens: int
    """The model's context length: the longest prompt a sweep may send."""

    @property
    def label(self) -> str:
        return f"{self.name} ({_millions(self.params)} params)"


def _millions(n: int) -> str:
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}K"


def describe(name: str, base_dir: Path, adapter_dir: Path) -> BenchModel:
    """A ``BenchModel`` for a built model: parameters counted from the weights' headers."""
    from safetensors import safe_open

    params = 0
    for weights in sorted(base_dir.glob("*.safetensors")):
        with safe_open(str(weights), framework="numpy") as f:
            for key in f.keys():  # noqa: SIM118 (a safetensors handle, not a dict)
                shape = f.get_slice(key).get_shape()
                count = 1
                for dim in shape:
                    count *= int(dim)
                params += count
    config = json.loads((base_dir / "config.json").read_text())
    return BenchModel(
        name=name,
        base_dir=base_dir,
        adapter_dir=adapter_dir,
        params=params,
        vocab_size=int(config["vocab_size"]),
        max_tokens=int(config["max_position_embeddings"]),
    )


def tiny_model() -> BenchModel:
    """The demo's tiny model, built (or reused) with this interpreter."""
    from swayhost.demo import tiny_model_paths

    paths = tiny_model_paths(sys.executable)
    return describe("tiny", Path(paths["base_dir"]), Path(paths["adapter_dir"]))


def medium_model(tokenizer_from: Path, root: Path | None = None) -> BenchModel:
    """The ~50M random Llama + random LoRA, built once under ``root`` and reused."""
    parent = root or cache_dir() / "bench"
    final = parent / f"random-llama-50m-v{RECIPE_VERSION}"
    build_once(final, lambda staging: _build(staging, tokenizer_from), RECIPE_VERSION)
    return describe("50m", final / "base", final / "adapter")


def _build(root: Path, tokenizer_from: Path) -> None:
    """Random base weights and a random adapter, deterministic for the seed."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one shard, once: the bench's own progress is enough
    base_dir, adapter_dir = root / "base", root / "adapter"
    base_dir.mkdir()
    for name in TOKENIZER_FILES:
        if (tokenizer_from / name).is_file():
            shutil.copy2(tokenizer_from / name, base_dir / name)
    tokenizer_config = base_dir / "tokenizer_config.json"
    settings = json.loads(tokenizer_config.read_text())
    settings["model_max_length"] = MEDIUM["max_position_embeddings"]  # this model's context
    tokenizer_config.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
    tokenizer_ids = json.loads((tokenizer_from / "config.json").read_text())
    special = {k: tokenizer_ids[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id")}
    torch.manual_seed(SEED)
    config = LlamaConfig(**MEDIUM, **special, tie_word_embeddings=False)
    model: Any = LlamaForCausalLM(config)
    model.eval()
    model.save_pretrained(base_dir)
    lora = LoraConfig(
        r=8,
        lora_alpha=16,
        target_modules=["q_proj", "v_proj", "o_proj"],
        lora_dropout=0.0,
        task_type="CAUSAL_LM",
    )
    peft_model: Any = get_peft_model(model, lora)
    generator = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:  # peft starts B at zero: the adapter would change nothing
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    peft_model.save_pretrained(adapter_dir)
