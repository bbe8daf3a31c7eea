"""The host's result cache: repeated requests skip the worker, bounded by bytes, per backend."""

from __future__ import annotations

import math
from pathlib import Path

from swayhost.cache import ResultCache
from swayhost.journal import request_key
from swayhost.spec import DEFAULT_CACHE_BYTES as CACHE
from swayplugin.v1 import backend_pb2 as pb
from swayworker.codec import LogprobOf, NextTokenDist, Request, ViewKey

from tests.helpers import same_result, spawn_dummy, workload


def _response(value: float) -> pb.ScoreResponse:
    return pb.ScoreResponse(logprob=value)


def test_repeated_requests_are_served_from_the_cache_with_identical_results() -> None:
    requests = workload(12)
    with spawn_dummy(cache_bytes=CACHE) as backend:
        first = [backend.score(r) for r in requests]
        again = [backend.score(r) for r in requests]
        batched = backend.score_many(requests)
        stats = backend.stats()
    assert all(map(same_result, again, first))
    assert all(map(same_result, batched, first))
    assert stats.computed == len(requests)
    assert stats.cache_hits == 2 * len(requests)
    assert stats.cache_misses == len(requests)


def test_a_cache_hit_hands_out_fresh_arrays() -> None:
    request = Request(ViewKey.ft(), NextTokenDist("the river", 8))
    with spawn_dummy(cache_bytes=CACHE) as backend:
        first = backend.score(request)
        first.logprobs[:] = 0.0
        second = backend.score(request)
    assert second.logprobs.any()


def test_cache_off_sends_every_call() -> None:
    request = workload(1)[0]
    with spawn_dummy(cache_bytes=0) as backend:
        backend.score(request)
        backend.score(request)
        stats = backend.stats()
    assert (stats.computed, stats.cache_hits, stats.cache_misses) == (2, 0, 0)


def test_journal_hits_fill_the_cache(tmp_path: Path) -> None:
    requests = workload(6)
    journal = tmp_path / "run.sqlite"
    with spawn_dummy(journal=journal, cache_bytes=CACHE) as first:
        want = first.score_many(requests)
    with spawn_dummy(journal=journal, cache_bytes=CACHE) as second:
        got = second.score_many(requests) + [second.score(r) for r in requests]
        stats = second.stats()
    assert all(map(same_result, got, want + want))
    assert (stats.computed, stats.journal_hits, stats.cache_hits) == (0, 6, 6)


def test_eviction_keeps_the_cache_within_its_byte_bound() -> None:
    one = ResultCache(1 << 20)
    one.put("probe", _response(0.0))
    entry_bytes = one.used_bytes
    cache = ResultCache(3 * entry_bytes)
    for i in range(3):
        cache.put(f"key{i}", _response(-float(i) - 0.5))
    assert cache.get("key0") is not None  # now the most recently used
    cache.put("key3", _response(-3.5))
    assert len(cache) == 3
    assert cache.used_bytes <= cache.max_bytes
    assert cache.get("key1") is None  # the least recently used went first
    assert [cache.get(k) is not None for k in ("key0", "key2", "key3")] == [True] * 3


def test_a_response_larger_than_the_cache_is_not_stored() -> None:
    cache = ResultCache(64)
    cache.put("big", _response(1.0))
    assert len(cache) == 0
    assert cache.used_bytes == 0


def test_backends_with_different_identities_never_share_results() -> None:
    request = Request(ViewKey.ft(), LogprobOf("the river", " ran"))
    assert request_key("dummy:64", request) != request_key("hf:/base:/adapter", request)
    with (
        spawn_dummy(cache_bytes=CACHE) as plain,
        spawn_dummy(cache_bytes=CACHE, nan_ft="1") as broken,
    ):
        plain_values = [plain.score(request) for _ in range(2)]
        broken_values = [broken.score(request) for _ in range(2)]
        hits = (plain.stats().cache_hits, broken.stats().cache_hits)
    assert all(math.isfinite(v) for v in plain_values)
    assert all(math.isnan(v) for v in broken_values)
    assert hits == (1, 1)
