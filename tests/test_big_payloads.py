"""Big payloads through the host: a 151,936-token vocabulary, prompts near a 2,048 context.

A full-vocabulary ``next_token_dist`` at Qwen2's vocabulary is ~1.8 MB on
the wire (float32 logprobs + int64 ids); a batch of 8 is ~14.6 MB, past
gRPC's default 4 MB message limit. Host and worker both raise their limit
to the ``limits.max_message_bytes`` the worker advertises, and the host cuts
batches so that each stays within a quarter of it. These tests send such
batches to a real HF worker and compare every result with in-process sway.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import swayhost
from swayhost import ModelSpec, WorkerOptions
from swayworker.hf.tiny import CORPUS

from tests.model_matrix import BIG_VOCAB, LONG_CONTEXT, Built, Cell, build_cell

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

sway_hf = pytest.importorskip("dlm_sway.backends.hf")
from dlm_sway.core.model import ModelSpec as SwaySpec  # noqa: E402

GRPC_DEFAULT_LIMIT = 4 * 1024 * 1024
ITEM_BYTES = BIG_VOCAB * (4 + 8)
TOLERANCE = 1e-5
"""Batched (left-padded) against sway's unary pass: kernel reduction order only."""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    return build_cell(tmp_path_factory.mktemp("matrix"), Cell("qwen2-151k", "lora"))


@pytest.fixture(scope="module")
def reference(built: Built) -> Iterator[Any]:
    spec = SwaySpec(
        kind="hf", base=str(built.base_dir), adapter=built.adapter_dir, dtype="fp32", device="cpu"
    )
    backend = sway_hf.HuggingFaceDifferentialBackend(base_spec=spec, adapter_path=built.adapter_dir)
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def worker(built: Built) -> Iterator[swayhost.RemoteBackend]:
    # No result cache: every call in these tests must cross the wire.
    options = WorkerOptions(cache_bytes=0)
    spec = ModelSpec(
        kind="hf",
        base=str(built.base_dir),
        adapter=built.adapter_dir,
        dtype="fp32",
        device="cpu",
        worker=options,
    )
    with swayhost.build(spec) as backend:
        yield backend


def long_prompts(reference: Any, count: int) -> list[str]:
    """``count`` texts of 2,040 to 2,047 tokens (BOS included): just inside the context."""
    tokenizer = reference._tokenizer
    ids = tokenizer(CORPUS * 30).input_ids[1:]  # without BOS
    prompts = []
    for i in range(count):
        text = tokenizer.decode(ids[: LONG_CONTEXT - 9 + i])
        n = len(tokenizer(text).input_ids)
        assert LONG_CONTEXT - 16 <= n <= LONG_CONTEXT, n
        prompts.append(text)
    return prompts


def assert_same_dist(got: Any, want: Any) -> None:
    assert got.vocab_size == want.vocab_size == BIG_VOCAB
    assert got.tail_logprob is None and want.tail_logprob is None  # k covers the vocabulary
    assert len(got.token_ids) == BIG_VOCAB
    np.testing.assert_allclose(got.logprobs, want.logprobs, rtol=0, atol=TOLERANCE)
    # Ids are equal wherever neighbours are not tied within the tolerance.
    gaps = np.abs(np.diff(want.logprobs))
    clear = np.concatenate([[True], gaps > 2 * TOLERANCE]) & np.concatenate(
        [gaps > 2 * TOLERANCE, [True]]
    )
    assert np.array_equal(np.asarray(got.token_ids)[clear], np.asarray(want.token_ids)[clear])


def test_the_worker_advertises_a_limit_above_grpcs_default(worker: Any) -> None:
    limits = worker.description.limits
    assert worker.description.model.vocab_size == BIG_VOCAB
    assert limits.max_message_bytes >= 8 * ITEM_BYTES > GRPC_DEFAULT_LIMIT
    assert limits.max_prompt_tokens == LONG_CONTEXT


def test_eight_full_vocabulary_dists_of_near_context_prompts_in_one_batch(
    worker: Any, reference: Any
) -> None:
    prompts = long_prompts(reference, 8)
    before = worker.stats().batch_rpcs
    with worker.as_finetuned() as view:
        got = view.next_token_dist_many(prompts, top_k=BIG_VOCAB)
    assert worker.stats().batch_rpcs == before + 1, "8 x 1.8 MB fits one message"
    assert [d.vocab_size for d in got] == [BIG_VOCAB] * 8
    with reference.as_finetuned() as view:
        for i in (0, 3, 7):  # sway's unary pass over 2k tokens x 152k logits is slow
            assert_same_dist(got[i], view.next_token_dist(prompts[i], top_k=BIG_VOCAB))


def test_batches_split_by_the_message_limit(worker: Any, reference: Any) -> None:
    """More full distributions than a quarter of max_message_bytes holds: several RPCs."""
    budget = worker.description.limits.max_message_bytes // 4
    per_rpc = budget // ITEM_BYTES
    count = per_rpc + 4
    assert count <= worker.description.limits.max_batch, "the item limit would split it anyway"
    prompts = [f"The river ran {i} times" for i in range(count)]
    before = worker.stats().batch_rpcs
    with worker.as_base() as view:
        got = view.next_token_dist_many(prompts, top_k=BIG_VOCAB)
    assert worker.stats().batch_rpcs - before == 2
    with reference.as_base() as view:
        for i in (0, per_rpc - 1, per_rpc, count - 1):  # both sides of the cut
            assert_same_dist(got[i], view.next_token_dist(prompts[i], top_k=BIG_VOCAB))


def test_a_prompt_past_the_context_fails_alone(worker: Any, reference: Any) -> None:
    prompts = long_prompts(reference, 1)
    too_long = prompts[0] + CORPUS
    with worker.as_finetuned() as view:
        got = view.next_token_dist_many([too_long, "The river"], top_k=5, return_exceptions=True)
    assert isinstance(got[0], ValueError) and f"holds {LONG_CONTEXT}" in str(got[0])
    assert len(got[1].token_ids) == 5
