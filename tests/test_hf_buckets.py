"""Batched HF scoring: length buckets, and logits only for the positions a job reads.

``_length_buckets`` is pure and tested as such; the integration test runs a
batch of widely mixed lengths (so it spans several buckets, left-padded with
``logits_to_keep`` for ``logprob_of`` and next-token jobs; rolling ones are
packed, ``tests/test_hf_packing.py``) and checks every item against the same
view's unary call.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from swayworker.hf.backend import (
    MIN_BUCKET,
    PADDING_WASTE,
    HFDifferentialBackend,
    _Job,
    _length_buckets,
)
from swayworker.hf.tiny import TinyModel

from tests.test_hf_backend import BATCH_TOLERANCE, SUM_RTOL, spec_for


def _jobs(lengths: list[int]) -> list[tuple[int, _Job[None]]]:
    return [(i, _Job(ids=[1] * n, finish=lambda _: None)) for i, n in enumerate(lengths)]


def _lengths(buckets: list[list[tuple[int, _Job[None]]]]) -> list[list[int]]:
    return [[len(job.ids) for _, job in bucket] for bucket in buckets]


def test_buckets_keep_order_and_respect_max_batch() -> None:
    lengths = sorted([40, 40, 39, 38, 38, 37, 36, 36, 35, 35, 34, 33], reverse=True)
    buckets = list(_length_buckets(_jobs(lengths), max_batch=5))
    assert _lengths(buckets) == [lengths[:5], lengths[5:10], lengths[10:]]
    assert [i for bucket in buckets for i, _ in bucket] == list(range(len(lengths)))


def _padding_share(lengths: list[int]) -> float:
    return 1 - sum(lengths) / (max(lengths) * len(lengths))


def test_a_bucket_closes_before_padding_passes_the_limit_but_never_below_the_minimum() -> None:
    long, short = [40] * MIN_BUCKET, [8] * MIN_BUCKET
    buckets = _lengths(list(_length_buckets(_jobs(long + short), max_batch=64)))
    # Short jobs join until one more would push padding past the limit.
    assert buckets == [[*long, 8, 8, 8], [8] * (MIN_BUCKET - 3)]
    assert _padding_share(buckets[0]) <= PADDING_WASTE < _padding_share([*buckets[0], 8])
    # Padding never closes a bucket of fewer than MIN_BUCKET jobs: short ones fill it first.
    few = [40] * (MIN_BUCKET - 4)
    buckets = _lengths(list(_length_buckets(_jobs(few + short), max_batch=64)))
    assert buckets == [[*few, 8, 8, 8, 8], [8] * (MIN_BUCKET - 4)]
    assert _padding_share(buckets[0]) > PADDING_WASTE
    # Mild spread stays in one pass.
    mild = sorted(range(30, 30 + 2 * MIN_BUCKET), reverse=True)
    assert _lengths(list(_length_buckets(_jobs(mild), max_batch=64))) == [mild]


SENTENCE = "the river ran past the old town where a baker sold warm bread every morning"
WORDS = SENTENCE.split()
PAIRS = [
    (" ".join(WORDS[: 1 + i % 14]), " " + " ".join(WORDS[i % 5 : i % 5 + 1 + i % 7]))
    for i in range(40)
]
TEXTS = [" ".join(WORDS[: 2 + (i * 5) % 14]) * (1 + i % 3) for i in range(40)]


@pytest.fixture(scope="module")
def backend(tiny_model: TinyModel) -> Iterator[HFDifferentialBackend]:
    built = HFDifferentialBackend(
        base_spec=spec_for(tiny_model, tiny_model.adapter_dir), adapter_path=tiny_model.adapter_dir
    )
    yield built
    built.close()


@pytest.mark.parametrize("view", ["as_base", "as_finetuned"])
def test_mixed_length_batches_equal_unary_calls(backend: HFDifferentialBackend, view: str) -> None:
    with getattr(backend, view)() as active:
        many = active.logprob_of_many(PAIRS)
        for got, pair in zip(many, PAIRS, strict=True):
            assert got == pytest.approx(active.logprob_of(*pair), rel=SUM_RTOL, abs=BATCH_TOLERANCE)
        rolling = active.rolling_logprob_many(TEXTS)
        for got_r, text in zip(rolling, TEXTS, strict=True):
            want = active.rolling_logprob(text)
            assert got_r.token_ids.tolist() == want.token_ids.tolist()
            assert got_r.logprobs == pytest.approx(want.logprobs, abs=BATCH_TOLERANCE)
        dists = active.next_token_dist_many(TEXTS, 8)
        for got_d, text in zip(dists, TEXTS, strict=True):
            want_d = active.next_token_dist(text, top_k=8)
            assert got_d.token_ids.tolist() == want_d.token_ids.tolist()
            assert got_d.logprobs == pytest.approx(want_d.logprobs, abs=BATCH_TOLERANCE)
