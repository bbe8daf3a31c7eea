"""The model matrix: one tiny random model per architecture users fine-tune, with adapters.

Users bring GPT-2-style, Qwen, Mistral, Phi and Gemma fine-tunes, not only
the tiny Llama every other test uses, and the architectures differ exactly
where a worker can go wrong: GPT-2's ``Conv1D`` layers (LoRA with
``fan_in_fan_out``) and missing BOS, Qwen2's q/k/v biases and 151,936-token
vocabulary, Phi-3's fused ``qkv_proj`` / ``gate_up_proj``, Gemma-2's logit
soft-capping and tied embeddings, and config fields transformers 5 renamed.
This module builds such models offline (random weights from a config,
tokenizers trained here, transformers 5 saving them) and PEFT adapters of
the variants users train (rsLoRA, all-linear, rank/alpha patterns, DoRA,
``modules_to_save``, embedding LoRA), each trained a few steps so that every
tensor it holds really moves the model.

Each base and each adapter is built once under a versioned folder
(``swayworker.hf.tiny.build_once``: atomic, marker last) and reused by later
runs. ``CELLS`` lists the (architecture, adapter) pairs the tests run; the
tests decide per worker whether a cell must be equal or refused.

Run ``python -m tests.model_matrix OUT_DIR`` to build every cell and print its paths.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swayworker.hf.tiny import ADAPTER_TEXT, CORPUS, build_once

RECIPE_VERSION = 2
"""Bump when a recipe below changes, so cached builds are not reused."""

SEED = 2024
MAX_POSITIONS = 256
BPE_VOCAB = 384
BIG_VOCAB = 151_936
"""Qwen2's embedding rows: a real vocabulary size, with a small trained tokenizer inside it."""
LONG_CONTEXT = 2048
"""The big-vocabulary Qwen2's context: long prompts at a real vocabulary size (payload tests)."""
ADAPTER_STEPS = 4


@dataclass(frozen=True, slots=True)
class Arch:
    """One architecture: how to make its config, its tokenizer, and what LoRA targets there."""

    name: str
    tokenizer: str
    """``spm`` (SentencePiece, BOS), ``bpe-bos`` or ``bpe`` (byte-level BPE, no BOS: GPT-2)."""
    config: Callable[[Any], Any]
    """tokenizer -> a transformers config."""
    attention: tuple[str, ...]
    """Default LoRA targets (the attention projections' names here)."""
    embedding: str
    tied: bool


@dataclass(frozen=True, slots=True)
class Variant:
    """One adapter recipe: LoraConfig keyword arguments, given the architecture."""

    name: str
    kwargs: Callable[[Arch], dict[str, Any]]
    note: str = ""


@dataclass(frozen=True, slots=True)
class Cell:
    """An (architecture, adapter variant) pair of the matrix."""

    arch: str
    variant: str

    @property
    def id(self) -> str:
        return f"{self.arch}/{self.variant}"


@dataclass(frozen=True, slots=True)
class Built:
    """Paths of one built cell."""

    cell: Cell
    base_dir: Path
    adapter_dir: Path


def _ids(tokenizer: Any) -> dict[str, Any]:
    return {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


def _decoder_shape(positions: int = MAX_POSITIONS) -> dict[str, Any]:
    return {
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": positions,
    }


def _llama(tok: Any) -> Any:
    from transformers import LlamaConfig

    # A theta other than the default: a loader that drops rope_parameters scores wrongly.
    return LlamaConfig(**_decoder_shape(), **_ids(tok), rope_parameters=_rope(50_000.0))


def _gpt2(tok: Any) -> Any:
    from transformers import GPT2Config

    return GPT2Config(n_embd=64, n_layer=2, n_head=4, n_positions=MAX_POSITIONS, **_ids(tok))


def _qwen2(tok: Any, vocab: int | None = None, positions: int = MAX_POSITIONS) -> Any:
    from transformers import Qwen2Config

    ids = _ids(tok) | ({"vocab_size": vocab} if vocab else {})
    return Qwen2Config(
        **_decoder_shape(positions), **ids, tie_word_embeddings=True, rope_parameters=_rope(1e6)
    )


def _qwen2_05b(tok: Any) -> Any:
    """Qwen2-0.5B's published shape (494M parameters) with random weights."""
    from transformers import Qwen2Config

    return Qwen2Config(
        **(_ids(tok) | {"vocab_size": BIG_VOCAB}),
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        max_position_embeddings=32_768,
        tie_word_embeddings=True,
        rope_parameters=_rope(1e6),
    )


def _mistral(tok: Any) -> Any:
    from transformers import MistralConfig

    return MistralConfig(
        **_decoder_shape(), **_ids(tok), sliding_window=None, rope_parameters=_rope(1e6)
    )


def _phi3(tok: Any) -> Any:
    from transformers import Phi3Config

    return Phi3Config(
        **_decoder_shape(),
        **_ids(tok),
        original_max_position_embeddings=MAX_POSITIONS,
        rope_parameters=_rope(10_000.0) | {"partial_rotary_factor": 1.0},
    )


def _gemma2(tok: Any) -> Any:
    from transformers import Gemma2Config

    shape = _decoder_shape() | {"num_hidden_layers": 2}
    return Gemma2Config(
        **shape,
        **_ids(tok),
        head_dim=16,
        query_pre_attn_scalar=16,
        sliding_window=MAX_POSITIONS,
        final_logit_softcapping=30.0,
        attn_logit_softcapping=50.0,
        rope_parameters=_rope(10_000.0),
    )


def _rope(theta: float) -> dict[str, Any]:
    return {"rope_theta": theta, "rope_type": "default"}


ARCHS: dict[str, Arch] = {
    a.name: a
    for a in (
        Arch("llama", "spm", _llama, ("q_proj", "v_proj"), "embed_tokens", tied=False),
        Arch("gpt2", "bpe", _gpt2, ("c_attn",), "wte", tied=True),
        Arch("qwen2", "bpe-bos", _qwen2, ("q_proj", "v_proj"), "embed_tokens", tied=True),
        Arch(
            "qwen2-151k",
            "bpe-bos",
            lambda tok: _qwen2(tok, BIG_VOCAB, LONG_CONTEXT),
            ("q_proj", "v_proj"),
            "embed_tokens",
            tied=True,
        ),
        Arch("mistral", "bpe-bos", _mistral, ("q_proj", "v_proj"), "embed_tokens", tied=False),
        Arch("phi3", "bpe-bos", _phi3, ("qkv_proj",), "embed_tokens", tied=False),
        Arch("gemma2", "bpe-bos", _gemma2, ("q_proj", "v_proj"), "embed_tokens", tied=True),
    )
}


def _pattern(arch: Arch) -> dict[str, Any]:
    """Two targets, one with its own rank and the other with its own alpha."""
    first = arch.attention[0]
    second = arch.attention[1] if len(arch.attention) > 1 else "o_proj"
    return {
        "target_modules": [first, second],
        "rank_pattern": {second: 4},
        "alpha_pattern": {first: 32},
    }


VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("lora", lambda a: {"target_modules": list(a.attention)}),
        Variant("rslora", lambda a: {"target_modules": list(a.attention), "use_rslora": True}),
        Variant("all-linear", lambda a: {"target_modules": "all-linear"}),
        Variant("pattern", _pattern, "rank_pattern / alpha_pattern"),
        Variant("dora", lambda a: {"target_modules": list(a.attention), "use_dora": True}),
        Variant(
            "save-lm_head",
            lambda a: {"target_modules": list(a.attention), "modules_to_save": ["lm_head"]},
            "modules_to_save=['lm_head']",
        ),
        Variant(
            "lora-bias",
            lambda a: {"target_modules": list(a.attention), "bias": "lora_only"},
            "bias='lora_only': the adapted layers' biases trained",
        ),
        Variant(
            "all-bias",
            lambda a: {"target_modules": list(a.attention), "bias": "all"},
            "bias='all': every bias trained",
        ),
        Variant(
            "embedding",
            lambda a: {"target_modules": [*a.attention, a.embedding]},
            "LoRA on the input embedding",
        ),
    )
}

REAL_SIZE = Arch(
    "qwen2-0.5b", "bpe-bos", _qwen2_05b, ("q_proj", "v_proj"), "embed_tokens", tied=True
)
"""The one real-size model (not a matrix cell: ~2 GB, built once into the user cache)."""

CELLS: tuple[Cell, ...] = (
    *(Cell("llama", v) for v in VARIANTS if not v.endswith("-bias")),
    Cell("gpt2", "lora"),
    Cell("gpt2", "all-linear"),
    Cell("qwen2", "lora"),
    Cell("qwen2", "pattern"),
    Cell("qwen2", "lora-bias"),
    Cell("qwen2", "all-bias"),
    Cell("qwen2-151k", "lora"),
    Cell("mistral", "lora"),
    Cell("mistral", "rslora"),
    Cell("phi3", "lora"),
    Cell("phi3", "all-linear"),
    Cell("gemma2", "lora"),
    Cell("gemma2", "dora"),
    Cell("gemma2", "save-lm_head"),
)


# --- building ------------------------------------------------------------------


def build_cell(root: Path, cell: Cell) -> Built:
    """The cell's base and adapter under ``root``, each built once."""
    return _build(root, ARCHS[cell.arch], VARIANTS[cell.variant], ADAPTER_STEPS)


def build_real_size(root: Path) -> Built:
    """The Qwen2-0.5B-shaped model with a q/v LoRA (one training step: it is 494M parameters)."""
    return _build(root, REAL_SIZE, VARIANTS["lora"], steps=1)


def _build(root: Path, arch: Arch, variant: Variant, steps: int) -> Built:
    top = Path(root).resolve() / f"matrix-v{RECIPE_VERSION}"
    base = build_once(top / arch.name, lambda s: _build_base(s, arch), RECIPE_VERSION) / "base"
    adapter_root = top / "adapters" / f"{arch.name}-{variant.name}"
    built = build_once(
        adapter_root, lambda s: _build_adapter(s, base, arch, variant, steps), RECIPE_VERSION
    )
    return Built(Cell(arch.name, variant.name), base, built / "adapter")


def _single_thread(build: Callable[[], None]) -> None:
    """Build on one thread: faster on a busy machine, and sums in a fixed order."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        build()
    finally:
        torch.set_num_threads(threads)


def _build_base(staging: Path, arch: Arch) -> None:
    def build() -> None:
        import torch
        from transformers import AutoModelForCausalLM

        torch.manual_seed(SEED)
        base = staging / "base"
        base.mkdir(parents=True)
        tokenizer = _tokenizer_into(arch.tokenizer, base)
        model = AutoModelForCausalLM.from_config(arch.config(tokenizer))
        model.save_pretrained(base)

    _single_thread(build)


def _build_adapter(staging: Path, base: Path, arch: Arch, variant: Variant, steps: int) -> None:
    def build() -> None:
        import torch
        from peft import LoraConfig, get_peft_model
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.manual_seed(SEED)
        tokenizer = AutoTokenizer.from_pretrained(base)
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        config = LoraConfig(
            r=8,
            lora_alpha=16,
            lora_dropout=0.0,
            init_lora_weights=False,  # B random too: the delta is there before training
            task_type="CAUSAL_LM",
            **variant.kwargs(arch),
        )
        peft_model = get_peft_model(model, config)
        batch = torch.tensor([tokenizer(ADAPTER_TEXT).input_ids[:48]])
        optimizer = torch.optim.AdamW(
            [p for p in peft_model.parameters() if p.requires_grad], lr=5e-3
        )
        peft_model.train()
        for _ in range(steps):
            loss = peft_model(input_ids=batch, labels=batch).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        peft_model.save_pretrained(staging / "adapter")

    _single_thread(build)


def _tokenizer_into(kind: str, directory: Path) -> Any:
    if kind == "spm":
        from swayworker.hf.tiny_spm import _spm_tokenizer_into

        return _spm_tokenizer_into(directory)
    tokenizer = _bpe(bos=kind == "bpe-bos")
    tokenizer.save_pretrained(directory)
    return tokenizer


def _bpe(*, bos: bool) -> Any:
    """A byte-level BPE; with ``bos`` it prepends ``<s>`` (Llama-like), else GPT-2-like.

    The GPT-2-like one has one special token, ``<|endoftext|>``, as eos and
    no pad token, so the workers' pad-falls-back-to-eos rule is exercised.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>"] if bos else ["<|endoftext|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator([CORPUS, ADAPTER_TEXT], trainer)
    if not bos:
        eos = specials[0]
        return PreTrainedTokenizerFast(
            tokenizer_object=bpe, eos_token=eos, bos_token=eos, model_max_length=MAX_POSITIONS
        )
    bpe.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        model_max_length=MAX_POSITIONS,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.model_matrix")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--cell", action="append", help="arch/variant (default: all)")
    args = parser.parse_args(argv)
    wanted = [Cell(*c.split("/")) for c in args.cell] if args.cell else list(CELLS)
    for cell in wanted:
        built = build_cell(args.out_dir, cell)
        print(
            json.dumps(
                {"cell": cell.id, "base": str(built.base_dir), "adapter": str(built.adapter_dir)}
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
