"""Several adapters of the tiny base, and adapters no worker should accept beside it.

Built offline once per test session: checkpoints of a pretend run
(``swayworker.hf.tiny_adapters``), an adapter of another base (same module
names, other shapes), a corrupt one (its weights file is garbage) and one of
another PEFT type (IA3), which a LoRA worker cannot reproduce.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from swayworker.hf.tiny import TinyModel
from swayworker.hf.tiny_adapters import build_checkpoints

CHECKPOINTS = 3


@dataclass(frozen=True)
class TinyAdapters:
    checkpoints: list[Path]
    """The tiny base's own adapter first, then ``CHECKPOINTS`` more."""
    other_base: Path
    corrupt: Path
    ia3: Path


@pytest.fixture(scope="session")
def tiny_adapters(tiny_model: TinyModel, tmp_path_factory: pytest.TempPathFactory) -> TinyAdapters:
    root = tmp_path_factory.mktemp("adapters")
    checkpoints = build_checkpoints(tiny_model.base_dir, root / "checkpoints", CHECKPOINTS)
    return TinyAdapters(
        checkpoints=[tiny_model.adapter_dir, *checkpoints],
        other_base=_other_base_adapter(root / "other-base"),
        corrupt=_corrupt_copy(tiny_model.adapter_dir, root / "corrupt"),
        ia3=_ia3_adapter(tiny_model.base_dir, root / "ia3"),
    )


def _other_base_adapter(out: Path) -> Path:
    """A LoRA of a Llama twice as narrow: the same module names, other shapes."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(7)
    config = LlamaConfig(
        vocab_size=448,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=256,
    )
    lora = LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj", "o_proj"])
    get_peft_model(LlamaForCausalLM(config), lora).save_pretrained(out)
    return out


def _corrupt_copy(adapter: Path, out: Path) -> Path:
    shutil.copytree(adapter, out)
    (out / "adapter_model.safetensors").write_bytes(b"\x00\x01 not a safetensors file " * 8)
    return out


def _ia3_adapter(base: Path, out: Path) -> Path:
    from peft import IA3Config, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(base))
    config = IA3Config(
        target_modules=["k_proj", "v_proj", "down_proj"], feedforward_modules=["down_proj"]
    )
    get_peft_model(model, config).save_pretrained(out)
    return out
