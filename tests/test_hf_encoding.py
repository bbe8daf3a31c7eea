"""The HF worker's batch tokenization: the native shortcut gives transformers' ids, always.

The tokenizers here are the model matrix's (a Llama-like BPE with ``<s>``, a
GPT-2-like BPE with no pad token, a sentencepiece Llama tokenizer) and the
tiny test model's, each loaded as the worker loads it (``AutoTokenizer``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from swayworker.hf.encoding import batch_encoder
from swayworker.hf.tiny import TinyModel

from tests.model_matrix import _tokenizer_into

TEXTS = [
    "hello",
    "",
    " leading space",
    "émigré ∑ 日本",
    "<s> a </s> <pad> <|endoftext|> <unk>",  # special tokens' text inside a prompt
    "word " * 60,
    "\n\ttabs and\r\nnewlines\n",
    "hello",  # a repeat
]


def _load(directory: Path) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    if tokenizer.pad_token_id is None:  # as the worker does
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


@pytest.fixture(params=["tiny", "bpe-bos", "bpe", "spm"])
def tokenizer(
    request: pytest.FixtureRequest, tiny_model: TinyModel, tmp_path_factory: pytest.TempPathFactory
) -> Any:
    if request.param == "tiny":
        return _load(tiny_model.base_dir)
    directory = tmp_path_factory.mktemp(f"tokenizer-{request.param}")
    _tokenizer_into(request.param, directory)
    return _load(directory)


def _counting_transformers_calls(tokenizer: Any) -> list[int]:
    """Count the batches that go through transformers' own encode (an instance attribute
    shadows the method transformers' call looks up)."""
    calls: list[int] = []
    original: Callable[..., Any] = tokenizer._encode_plus

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    tokenizer._encode_plus = counted
    return calls


def test_the_native_call_gives_transformers_ids(tokenizer: Any) -> None:
    want = [list(row) for row in tokenizer(TEXTS)["input_ids"]]
    encode = batch_encoder(tokenizer)
    calls = _counting_transformers_calls(tokenizer)
    assert encode(TEXTS) == want
    assert encode(TEXTS[:1]) == want[:1]
    assert not calls, "these plain fast tokenizers should take the native call"


def test_a_tokenizer_set_to_truncate_goes_the_long_way(tokenizer: Any) -> None:
    """transformers' call resets truncation and padding before encoding; the shortcut
    must not encode with settings transformers would have reset."""
    want = [list(row) for row in tokenizer(TEXTS)["input_ids"]]
    encode = batch_encoder(tokenizer)
    calls = _counting_transformers_calls(tokenizer)
    tokenizer.backend_tokenizer.enable_truncation(max_length=3)
    assert encode(TEXTS) == want  # long texts whole, as transformers gives them
    assert len(calls) == 1
    assert encode(TEXTS) == want  # transformers' call reset it: native again
    assert len(calls) == 1
    tokenizer.backend_tokenizer.enable_padding(length=90)
    assert encode(TEXTS) == want
    assert len(calls) == 2


def test_a_tokenizer_class_with_its_own_call_goes_the_long_way(tiny_model: TinyModel) -> None:
    from transformers.tokenization_utils_tokenizers import TokenizersBackend

    class Marked(TokenizersBackend):  # type: ignore[misc]
        """A model's tokenizer that adds to transformers' encode."""

        def _encode_plus(self, *args: Any, **kwargs: Any) -> Any:
            out = super()._encode_plus(*args, **kwargs)
            out["input_ids"] = [[*row, 7] for row in out["input_ids"]]
            return out

    plain = _load(tiny_model.base_dir)
    plain.__class__ = Marked
    want = [list(row) for row in plain(TEXTS)["input_ids"]]
    assert all(row[-1] == 7 for row in want)
    assert batch_encoder(plain)(TEXTS) == want
