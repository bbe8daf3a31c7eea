"""Checkpoints of a pretend training run: the tiny adapter with its update grown step by step.

A sweep needs several adapters of one base that differ the way checkpoints
of one run do. Training each would take minutes; scaling the tiny adapter's
LoRA B matrices by ``step / last`` gives adapters whose effect grows from
nothing to the full adapter in seconds, offline. Also here: the two bad
adapters a sweep must survive, one shaped for another base and one whose
weights file is garbage.

``python -m swayworker.hf.checkpoints OUT`` builds the tiny model (or reuses
it) and writes the checkpoints next to it, printing their folders.
"""

from __future__ import annotations

import argparse
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

WEIGHTS = "adapter_model.safetensors"
DEFAULT_STEPS = (25, 50, 100, 200, 400, 800)


def build_checkpoints(adapter_dir: Path, out_dir: Path, steps: Sequence[int]) -> list[Path]:
    """``out_dir/checkpoint-STEP`` for each step, LoRA B scaled by ``step / max(steps)``.

    Each is written once: an existing folder is kept as is.
    """
    from safetensors.numpy import load_file, save_file

    weights = load_file(str(adapter_dir / WEIGHTS))
    last = max(steps)
    made = []
    for step in steps:
        target = out_dir / f"checkpoint-{step}"
        if not (target / WEIGHTS).is_file():
            staging = out_dir / f".checkpoint-{step}.staging"
            shutil.rmtree(staging, ignore_errors=True)
            shutil.copytree(adapter_dir, staging)
            scale = step / last
            scaled = {k: v * scale if ".lora_B." in k else v for k, v in weights.items()}
            save_file(scaled, str(staging / WEIGHTS), metadata={"format": "pt"})
            staging.rename(target)
        made.append(target)
    return made


def build_wrong_shape(adapter_dir: Path, target: Path) -> Path:
    """An adapter for another base: every LoRA A matrix is one input column short."""
    from safetensors.numpy import load_file, save_file

    shutil.copytree(adapter_dir, target)
    weights = load_file(str(adapter_dir / WEIGHTS))
    cut = {k: v[:, :-1].copy() if ".lora_A." in k else v for k, v in weights.items()}
    save_file(cut, str(target / WEIGHTS), metadata={"format": "pt"})
    return target


def build_corrupt(adapter_dir: Path, target: Path) -> Path:
    """An adapter whose weights file is not safetensors at all."""
    shutil.copytree(adapter_dir, target)
    (target / WEIGHTS).write_bytes(b"\x00garbage, not a safetensors file\x00" * 8)
    return target


def main(argv: list[str] | None = None) -> int:
    from swayworker.hf.tiny import build_tiny_model

    parser = argparse.ArgumentParser(
        prog="python -m swayworker.hf.checkpoints",
        description="Build the tiny model (or reuse it) and checkpoints of its adapter.",
    )
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--steps", type=int, nargs="+", default=list(DEFAULT_STEPS))
    args = parser.parse_args(argv)
    tiny = build_tiny_model(args.out_dir)
    folder = args.out_dir.resolve() / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    made = build_checkpoints(tiny.adapter_dir, folder, args.steps)
    print(json.dumps({**tiny.to_json(), "checkpoints": [str(p) for p in made]}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
