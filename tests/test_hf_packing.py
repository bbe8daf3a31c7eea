"""Sequence packing in rolling batches: several short sequences per row, checked before use.

``pack_rows`` and ``packed_inputs`` are pure and tested as such. The
integration tests run the worker's HF backend on the tiny model in this
process, count the rows of every forward pass, and check every packed item
against the same view's unary call; a model whose packed pass does not match
the padded one (here: a mask that lets sequences see each other, as a model
ignoring the custom mask would) must keep padding, with the same results.
Every architecture of the model matrix packs through the worker in
``tests/test_model_matrix.py`` (its batched texts are packed).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import torch
from swayworker.hf import backend as hf_backend
from swayworker.hf.backend import HFDifferentialBackend
from swayworker.hf.packing import Span, pack_rows, packed_inputs
from swayworker.hf.tiny import TinyModel

from tests.test_hf_backend import BATCH_TOLERANCE, spec_for

SENTENCE = "the river ran past the old town where a baker sold warm bread every morning"
WORDS = SENTENCE.split(" ")
MIXED = [" ".join(WORDS[: 2 + (i * 5) % 14]) for i in range(12)]
"""Twelve texts of 3 to 15 tokens: packed, they fill fewer rows than twelve."""


def test_rows_are_filled_first_fit_longest_first_and_never_wider_than_the_longest() -> None:
    lengths = [10, 3, 7, 2, 10, 5]
    rows = pack_rows(lengths)
    assert rows == [[0], [4], [2, 1], [5, 3]]
    assert all(sum(lengths[i] for i in row) <= max(lengths) for row in rows)
    assert pack_rows([4, 4, 4]) == [[0], [1], [2]]  # nothing to gain: one row each


def test_packed_inputs_restart_positions_and_let_a_token_see_only_its_own_sequence() -> None:
    batch = [[5, 6, 7, 8], [9, 10], [11]]
    packed = packed_inputs(batch, pad_token_id=0, torch=torch, dtype=torch.float32, device="cpu")
    assert packed.input_ids.tolist() == [[5, 6, 7, 8], [9, 10, 11, 0]]
    assert packed.position_ids.tolist() == [[0, 1, 2, 3], [0, 1, 0, 0]]
    assert packed.spans == [Span(0, 0, 4), Span(1, 0, 2), Span(1, 2, 3)]
    assert packed.attention_mask.shape == (2, 1, 4, 4)
    assert packed.attention_mask.dtype == torch.float32
    attends = (packed.attention_mask[:, 0] == 0).tolist()
    yes, no = True, False
    assert attends[0] == [[yes, no, no, no], [yes, yes, no, no], [yes, yes, yes, no], [yes] * 4]
    assert attends[1] == [
        [yes, no, no, no],
        [yes, yes, no, no],
        [no, no, yes, no],  # the second sequence starts afresh
        [no, no, no, yes],  # the padding sees only itself: no empty softmax row
    ]
    blocked = packed.attention_mask[1, 0, 2, 0].item()
    assert blocked == torch.finfo(torch.float32).min


@pytest.fixture
def backend(tiny_model: TinyModel) -> Iterator[HFDifferentialBackend]:
    """A fresh backend per test: whether it packs is learnt on its first batch."""
    built = HFDifferentialBackend(
        base_spec=spec_for(tiny_model, tiny_model.adapter_dir), adapter_path=tiny_model.adapter_dir
    )
    yield built
    built.close()


def _rows_per_pass(backend: HFDifferentialBackend) -> list[int]:
    """The batch dimension of every forward pass of ``backend`` from now on."""
    rows: list[int] = []

    def record(_module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        input_ids = kwargs.get("input_ids", args[0] if args else None)
        rows.append(int(input_ids.shape[0]))

    backend._model.register_forward_pre_hook(record, with_kwargs=True)
    return rows


def _assert_equal_to_unary(view: Any, texts: list[str], results: list[Any]) -> None:
    for got, text in zip(results, texts, strict=True):
        want = view.rolling_logprob(text)
        assert got.token_ids.tolist() == want.token_ids.tolist()
        assert got.logprobs == pytest.approx(want.logprobs, abs=BATCH_TOLERANCE)
        assert got.total_logprob == pytest.approx(want.total_logprob, abs=BATCH_TOLERANCE * 16)


@pytest.mark.parametrize("view", ["as_base", "as_finetuned"])
def test_a_rolling_batch_of_mixed_lengths_is_packed_once_checked(
    backend: HFDifferentialBackend, view: str
) -> None:
    rows = _rows_per_pass(backend)
    with getattr(backend, view)() as active:
        first = active.rolling_logprob_many(MIXED)
        second = active.rolling_logprob_many(MIXED[::-1])
        passes = list(rows)
        _assert_equal_to_unary(active, MIXED, first)
        _assert_equal_to_unary(active, MIXED[::-1], second)
    packed_rows = len(pack_rows([len(r.token_ids) for r in first]))
    assert packed_rows < len(MIXED)
    # First batch: the check (a probe padded, one row per sequence, then packed into
    # two rows), then the batch packed. Second batch: packed at once.
    (probe_padded, probe_packed), rest = passes[:2], passes[2:]
    assert probe_padded > probe_packed == 2
    assert rest == [packed_rows, packed_rows]


def test_a_model_whose_packed_pass_differs_keeps_padding(
    backend: HFDifferentialBackend,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def leaky(*args: Any, **kwargs: Any) -> Any:
        """Sequences that see each other: what a model that ignores the custom mask does."""
        packed = packed_inputs(*args, **kwargs)
        width = packed.input_ids.shape[1]
        causal = torch.full((width, width), torch.finfo(torch.float32).min).triu_(1)
        return replace(packed, attention_mask=causal.expand_as(packed.attention_mask))

    monkeypatch.setattr(hf_backend, "packed_inputs", leaky)
    rows = _rows_per_pass(backend)
    with caplog.at_level(logging.INFO, logger=hf_backend.__name__), backend.as_finetuned() as view:
        first = view.rolling_logprob_many(MIXED)
        second = view.rolling_logprob_many(MIXED[::-1])
        passes = list(rows)
        _assert_equal_to_unary(view, MIXED, first)
        _assert_equal_to_unary(view, MIXED[::-1], second)
    assert passes[0] > passes[1] == 2  # the check's probe, padded then packed
    assert sum(passes[2:]) == 2 * len(MIXED)  # never packed: length buckets, a row per item
    assert "sequence packing is off for this model" in caplog.text


@pytest.mark.parametrize("field", ["sliding_window", "attention_chunk_size"])
def test_rows_wider_than_a_local_attention_span_are_not_packed(
    backend: HFDifferentialBackend, field: str
) -> None:
    setattr(backend._model.config, field, 4)  # a custom mask would drop the model's own span
    rows = _rows_per_pass(backend)
    with backend.as_finetuned() as view:
        results = view.rolling_logprob_many(MIXED)
        passes = list(rows)
        _assert_equal_to_unary(view, MIXED, results)
    assert sum(passes) == len(MIXED)  # length buckets, a row per item: nothing packed


def test_half_precision_is_never_packed(tiny_model: TinyModel) -> None:
    """bf16's own rounding would hide a leaky mask from the check: no packing there."""
    spec = spec_for(tiny_model, tiny_model.adapter_dir).model_copy(update={"dtype": "bf16"})
    built = HFDifferentialBackend(base_spec=spec, adapter_path=tiny_model.adapter_dir)
    try:
        rows = _rows_per_pass(built)
        with built.as_finetuned() as view:
            view.rolling_logprob_many(MIXED)
            view.rolling_logprob_many(MIXED)
        assert sum(rows) == 2 * len(MIXED)  # a packed pass would hold fewer rows than items
    finally:
        built.close()
