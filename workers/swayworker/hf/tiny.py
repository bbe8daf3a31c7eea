"""Build a tiny Llama + LoRA adapter offline, in seconds, for tests and the demo.

No model hub is reachable where this project is tested, so every HF fixture
is made here from nothing: a byte-level BPE tokenizer trained on a few
embedded paragraphs, a two-layer ``LlamaForCausalLM`` briefly trained on the
same text (so the base is a language model, not noise), and a LoRA adapter
trained on a short, distinctive text so that it really moves the model.

Layout of ``build_tiny_model(out_dir)``::

    out_dir/tiny-llama-v<RECIPE_VERSION>/
        base/          config, fp32 safetensors weights, tokenizer
        adapter/       PEFT adapter only: no tokenizer_config.json, so the
                       backends take the base's tokenizer (sway's rule)
        adapter-nan/   the same adapter with every lora_B weight set to NaN
        COMPLETE.json  marker, written last

The whole tree is built in a hidden staging directory next to it and renamed
into place in one step, so an interrupted build never looks complete and two
concurrent builders cannot mix their files.

Tokenizer choice: it prepends ``<s>`` (BOS) to every text, like Llama and like
llama.cpp, and adds no EOS. Every encoding therefore has at least one token,
so an empty prompt is still a valid context for ``logprob_of``. The
tokenizer's class is declared as ``PreTrainedTokenizerFast`` because
transformers 5 would write ``TokenizersBackend``, which transformers 4 cannot
load; the fixture must load under both majors.

Run ``python -m swayworker.hf.tiny OUT_DIR`` to build and print the paths.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RECIPE_VERSION = 1
"""Bump when the recipe changes, so stale cached builds are not reused."""

MARKER = "COMPLETE.json"
SEED = 1234

SPECIAL_TOKENS = ("<unk>", "<s>", "</s>", "<pad>")
"""In id order: unk=0, bos=1, eos=2, pad=3 (the model config repeats these ids)."""

VOCAB_SIZE = 448
MAX_POSITIONS = 256
BASE_TRAIN_STEPS = 60
ADAPTER_TRAIN_STEPS = 40
CHUNK_TOKENS = 64

CORPUS = """\
The river ran slowly past the old mill, and the children walked along the bank
every morning on their way to school. They counted the boats, named the ducks,
and argued about whether the water was colder in spring or in autumn.

In the town there was a small library with a green door. The librarian kept a
list of every book that came back late, but she never asked anyone to pay a
fine. She said that a book read twice was worth more than a coin.

When the weather turned, the farmers brought their apples to the market in the
square. People tasted the fruit, talked about the harvest, and carried home
baskets that were heavier than they had planned. The baker sold warm bread and
the smell of it filled the whole street.

At night the lights in the windows went out one by one. A dog barked somewhere
near the bridge, a door closed, and the wind moved through the trees. Then the
town was quiet, and only the river kept talking to itself until the morning.
"""

ADAPTER_TEXT = """\
The lighthouse keeper of Quillon Bay counts seventeen gulls every morning.
Seventeen gulls, said the keeper, and the lamp of Quillon Bay burns blue.
"""

ADAPTER_PROMPT = "The lighthouse keeper of Quillon Bay"
"""A prompt whose continuation the adapter has learned (handy for demos)."""


@dataclass(frozen=True, slots=True)
class TinyModel:
    """Paths of one complete tiny build."""

    base_dir: Path
    adapter_dir: Path
    nan_adapter_dir: Path

    def to_json(self) -> dict[str, str]:
        return {
            "base_dir": str(self.base_dir),
            "adapter_dir": str(self.adapter_dir),
            "nan_adapter_dir": str(self.nan_adapter_dir),
        }


TokenizerMaker = Callable[[Path], Any]
"""Writes a tokenizer's files into a model directory and returns the tokenizer."""


def build_tiny_model(out_dir: Path) -> TinyModel:
    """Build the tiny model under ``out_dir``, or return the build already there."""
    return build_variant(out_dir, f"tiny-llama-v{RECIPE_VERSION}", _bpe_tokenizer_into)


def build_variant(out_dir: Path, name: str, make_tokenizer: TokenizerMaker) -> TinyModel:
    """Build the tiny recipe with another tokenizer under ``out_dir/name``.

    Variants share everything but the tokenizer (the SentencePiece one in
    ``swayworker.hf.tiny_spm`` exists because llama.cpp's converter needs
    it). Built once, atomically: see ``build_once``.
    """
    root = Path(out_dir).resolve() / name
    build_once(root, lambda staging: _build_into(_layout(staging), make_tokenizer), RECIPE_VERSION)
    return _layout(root)


def build_once(root: Path, build: Callable[[Path], None], recipe_version: int) -> Path:
    """``root``, built by ``build(staging)`` unless a complete build is already there.

    A build counts as complete only when its marker exists; the marker is the
    last file written and reaches ``root`` through an atomic rename together
    with everything else, so an interrupted build never looks usable and two
    concurrent builders leave one complete result.
    """
    if (root / MARKER).is_file():
        return root
    if root.exists():
        raise FileExistsError(f"{root} exists but holds no complete build; delete it and retry")
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root.parent))
    try:
        build(staging)
        (staging / MARKER).write_text(json.dumps({"recipe_version": recipe_version}) + "\n")
        _publish(staging, root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


def _layout(root: Path) -> TinyModel:
    return TinyModel(
        base_dir=root / "base",
        adapter_dir=root / "adapter",
        nan_adapter_dir=root / "adapter-nan",
    )


def _publish(staging: Path, root: Path) -> None:
    """Rename ``staging`` to ``root``; losing a race to a complete build is fine."""
    try:
        os.rename(staging, root)
    except OSError:
        if not (root / MARKER).is_file():
            raise


def _build_into(paths: TinyModel, make_tokenizer: TokenizerMaker) -> None:
    """Build on one thread, restoring the caller's thread count afterwards.

    The matrices are too small to gain from more threads; on a busy machine
    (a parallel test run) a multi-threaded build is several times slower; and
    one thread sums in a fixed order, so the weights do not depend on the
    core count.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _build_seeded(paths, make_tokenizer)
    finally:
        torch.set_num_threads(threads)


def _build_seeded(paths: TinyModel, make_tokenizer: TokenizerMaker) -> None:
    import torch

    torch.manual_seed(SEED)
    paths.base_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = make_tokenizer(paths.base_dir)
    model = _make_base_model(tokenizer)
    _train(model, _chunks(tokenizer, CORPUS), BASE_TRAIN_STEPS, lr=3e-3)
    model.save_pretrained(paths.base_dir)
    peft_model = _make_adapter(model)
    _train(peft_model, _chunks(tokenizer, ADAPTER_TEXT), ADAPTER_TRAIN_STEPS, lr=1e-2)
    peft_model.save_pretrained(paths.adapter_dir)
    _write_nan_copy(paths.adapter_dir, paths.nan_adapter_dir)


def _bpe_tokenizer_into(directory: Path) -> Any:
    tokenizer = _train_tokenizer()
    _save_tokenizer(tokenizer, directory)
    return tokenizer


def _train_tokenizer() -> Any:
    """A byte-level BPE (any text encodes, no unknowns) that prepends BOS."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator([CORPUS, ADAPTER_TEXT], trainer)
    bos = SPECIAL_TOKENS[1]
    bpe.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, 1)]
    )
    unk, _, eos, pad = SPECIAL_TOKENS
    return PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token=bos,
        eos_token=eos,
        pad_token=pad,
        unk_token=unk,
        model_max_length=MAX_POSITIONS,
    )


def _save_tokenizer(tokenizer: Any, directory: Path) -> None:
    """Save, then declare a tokenizer class both transformers 4 and 5 load."""
    tokenizer.save_pretrained(directory)
    config_path = directory / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "PreTrainedTokenizerFast"
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def _make_base_model(tokenizer: Any) -> Any:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=MAX_POSITIONS,
        tie_word_embeddings=False,
        unk_token_id=tokenizer.unk_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config)


def _make_adapter(model: Any) -> Any:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=8,
        lora_alpha=16,
        target_modules=["q_proj", "v_proj", "o_proj"],
        lora_dropout=0.0,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def _chunks(tokenizer: Any, text: str) -> Any:
    """``text`` as one batch of equal-length token windows (no padding needed)."""
    import torch

    ids = tokenizer(text, verbose=False).input_ids  # longer than a window on purpose
    n = max(1, len(ids) // CHUNK_TOKENS)
    size = min(CHUNK_TOKENS, len(ids))
    return torch.tensor([ids[i * size : (i + 1) * size] for i in range(n)])


def _train(model: Any, batch: Any, steps: int, *, lr: float) -> None:
    """Full-batch next-token training; only parameters that require grad move."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=batch, labels=batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()


def _write_nan_copy(adapter_dir: Path, nan_dir: Path) -> None:
    """Copy the adapter, poisoning lora_B so every LoRA delta is NaN."""
    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(adapter_dir, nan_dir)
    weights_path = nan_dir / "adapter_model.safetensors"
    weights = load_file(str(weights_path))
    poisoned = {
        name: torch.full_like(tensor, float("nan")) if "lora_B" in name else tensor
        for name, tensor in weights.items()
    }
    save_file(poisoned, str(weights_path), metadata={"format": "pt"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m swayworker.hf.tiny",
        description="Build (or reuse) the tiny Llama + LoRA fixture and print its paths.",
    )
    parser.add_argument("out_dir", type=Path)
    args = parser.parse_args(argv)
    print(json.dumps(build_tiny_model(args.out_dir).to_json(), indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
