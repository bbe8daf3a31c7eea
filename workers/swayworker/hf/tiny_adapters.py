"""Several LoRA adapters of one base, built offline: the checkpoints of a pretend run.

A sweep (many adapters, one base) needs adapters that really differ. Each
one here starts from its own seed and trains a different number of steps on
the adapter text, so checkpoint ``i`` has moved the model further than
checkpoint ``i - 1``, as the checkpoints of a real run would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from swayworker.hf.tiny import ADAPTER_TEXT, _chunks, _make_adapter, _train, build_once

RECIPE_VERSION = 1
STEPS_PER_CHECKPOINT = 6


def build_checkpoints(base_dir: Path, out_dir: Path, count: int) -> list[Path]:
    """``count`` adapters of the model at ``base_dir`` under ``out_dir`` (each built once)."""
    return [_checkpoint(base_dir, Path(out_dir).resolve(), i) for i in range(count)]


def _checkpoint(base_dir: Path, out_dir: Path, index: int) -> Path:
    def build(staging: Path) -> None:
        _build_checkpoint(base_dir, staging, index)

    return build_once(out_dir / f"checkpoint-{index + 1}", build, RECIPE_VERSION) / "adapter"


def _build_checkpoint(base_dir: Path, staging: Path, index: int) -> None:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # fixed summation order: the weights do not depend on the cores
    try:
        torch.manual_seed(1000 + index)
        model, tokenizer = _load_base(base_dir)
        peft_model = _make_adapter(model)
        steps = STEPS_PER_CHECKPOINT * (index + 1)
        _train(peft_model, _chunks(tokenizer, ADAPTER_TEXT), steps, lr=1e-2)
        peft_model.save_pretrained(staging / "adapter")
    finally:
        torch.set_num_threads(threads)


def _load_base(base_dir: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(base_dir))
    model = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype="float32")
    return model, tokenizer
