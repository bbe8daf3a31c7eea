"""The tiny Llama with a SentencePiece tokenizer, for llama.cpp.

llama.cpp's GGUF converter (``convert_hf_to_gguf.py``) refuses a home-trained
byte-level BPE tokenizer (it only knows pre-tokenizers by the hash of
published ones), but it converts any Llama whose tokenizer is a
SentencePiece model. So this variant trains one with the ``sentencepiece``
package on the same text, with the same special-token ids and a byte
fallback (any text encodes), and otherwise builds exactly the tiny recipe
of ``swayworker.hf.tiny``: same model, adapter and NaN adapter.

transformers loads it with ``AutoTokenizer`` from the folder holding
``tokenizer.model``; like llama.cpp it prepends BOS.

Run ``python -m swayworker.hf.tiny_spm OUT_DIR`` to build and print the paths.
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

from swayworker.hf.tiny import (
    ADAPTER_TEXT,
    CORPUS,
    MAX_POSITIONS,
    SPECIAL_TOKENS,
    TinyModel,
    build_variant,
)

RECIPE_VERSION = 1
"""Bump when this variant's tokenizer recipe changes."""

SPM_VOCAB_SIZE = 400
"""256 byte-fallback pieces, 4 specials, and the merges the small corpus supports."""


def build_spm_tiny_model(out_dir: Path) -> TinyModel:
    """Build (or reuse) the SentencePiece variant under ``out_dir``."""
    return build_variant(out_dir, f"tiny-llama-spm-v{RECIPE_VERSION}", _spm_tokenizer_into)


def _spm_tokenizer_into(directory: Path) -> Any:
    """Train the SentencePiece model into ``directory`` and load it the HF way."""
    import sentencepiece as spm
    from transformers import AutoTokenizer

    unk, bos, eos, pad = SPECIAL_TOKENS
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter((CORPUS + ADAPTER_TEXT).splitlines()),
        model_writer=model,
        model_type="bpe",
        vocab_size=SPM_VOCAB_SIZE,
        byte_fallback=True,
        character_coverage=1.0,
        normalization_rule_name="identity",
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=3,
        unk_piece=unk,
        bos_piece=bos,
        eos_piece=eos,
        pad_piece=pad,
        num_threads=1,
        minloglevel=2,
    )
    (directory / "tokenizer.model").write_bytes(model.getvalue())
    config = {
        "tokenizer_class": "LlamaTokenizer",
        "bos_token": bos,
        "eos_token": eos,
        "unk_token": unk,
        "pad_token": pad,
        "add_bos_token": True,
        "add_eos_token": False,
        "model_max_length": MAX_POSITIONS,
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    return AutoTokenizer.from_pretrained(directory)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m swayworker.hf.tiny_spm",
        description="Build (or reuse) the SentencePiece tiny Llama + LoRA and print its paths.",
    )
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    print(json.dumps(build_spm_tiny_model(args.out_dir).to_json(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
