"""Dynamic batching: concurrent calls share ScoreBatch RPCs; a lone caller goes unary."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import swayhost
from swayhost import ModelSpec, WorkerOptions
from swayworker.codec import LogprobOf, NextTokenDist, Request, RollingLogprobOp, ViewKey
from swayworker.hf.tiny import TinyModel

from tests.helpers import same_result, spawn_dummy, workload

THREADS = 8
PER_THREAD = 6


def _concurrently(score: Callable[[Request], Any], requests: Sequence[Request]) -> list[Any]:
    """Score ``requests`` from ``THREADS`` threads at once, each taking every THREADS-th one."""
    results: list[Any] = [None] * len(requests)
    start = threading.Barrier(THREADS)

    def run(offset: int) -> None:
        start.wait()
        for i in range(offset, len(requests), THREADS):
            results[i] = score(requests[i])

    with ThreadPoolExecutor(THREADS) as pool:
        for future in [pool.submit(run, t) for t in range(THREADS)]:
            future.result()
    return results


def test_concurrent_calls_are_coalesced_and_match_sequential_answers_exactly() -> None:
    requests = workload(THREADS * PER_THREAD)
    with spawn_dummy(cache_bytes=0, dynamic_batching=False) as plain:
        want = [plain.score(r) for r in requests]
    with spawn_dummy(cache_bytes=0, sleep_ms="5") as backend:
        got = _concurrently(backend.score, requests)
        stats = backend.stats()
    assert all(map(same_result, got, want))
    assert stats.computed == len(requests)
    assert stats.batch_rpcs >= 1
    assert stats.score_rpcs + stats.batch_rpcs < len(requests)


def test_a_bad_request_in_a_coalesced_batch_fails_alone() -> None:
    good = workload(THREADS * 2)
    bad = Request(ViewKey.ft(), LogprobOf("the river", ""))
    requests = [*good[:THREADS], bad, *good[THREADS:]]

    def score(request: Request) -> Any:
        try:
            return backend.score(request)
        except Exception as exc:  # the error travels to its own caller only
            return exc

    with spawn_dummy(cache_bytes=0, sleep_ms="5") as backend:
        got = _concurrently(score, requests)
        stats = backend.stats()
    assert [isinstance(v, Exception) for v in got] == [r is bad for r in requests]
    assert stats.batch_rpcs >= 1


def test_a_single_threaded_caller_sends_unary_calls() -> None:
    requests = workload(20)
    with spawn_dummy(cache_bytes=0) as backend:
        for request in requests:
            backend.score(request)
        stats = backend.stats()
    assert (stats.score_rpcs, stats.batch_rpcs, stats.computed) == (20, 0, 20)


@pytest.mark.slow
def test_hf_coalesced_results_match_unary_within_batched_tolerance(tiny_model: TinyModel) -> None:
    pytest.importorskip("torch")
    words = [
        "the",
        "keeper",
        "lit",
        "the",
        "lamp",
        "and",
        "watched",
        "the",
        "ships",
        "sail",
        "past",
        "the",
        "old",
        "mill",
    ]
    texts = [" ".join(words[i % 5 : i % 5 + 3 + i % 9]) for i in range(THREADS * PER_THREAD)]
    requests = [
        Request(ViewKey.ft(), NextTokenDist(t, 16))
        if i % 2
        else Request(ViewKey.base(), RollingLogprobOp(t))
        for i, t in enumerate(texts)
    ]
    spec = ModelSpec(
        kind="hf",
        base=str(tiny_model.base_dir),
        adapter=tiny_model.adapter_dir,
        dtype="fp32",
        device="cpu",
        worker=WorkerOptions(cache_bytes=0),
    )
    with swayhost.spawn(spec) as backend:
        want = [backend.score(r) for r in requests]
        sequential = backend.stats()
        got = _concurrently(backend.score, requests)
        stats = backend.stats()
    assert sequential.batch_rpcs == 0
    assert stats.batch_rpcs >= 1
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g.token_ids, w.token_ids)
        np.testing.assert_allclose(g.logprobs, w.logprobs, rtol=0, atol=1e-5)
