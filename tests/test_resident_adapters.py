"""Many adapters, one base: swapping on a warm worker, several resident at once.

Real HF workers on the tiny Llama and adapters built offline. The reference
for every number is a fresh worker built with ``swayhost.build`` for that one
adapter: a swapped or resident adapter must give the same bits on every view
(base, ft, scaled, null) and every operation.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest
import swayhost
from swayhost.journal import message_key
from swayhost.proxy import make_proxy
from swayplugin.v1 import backend_pb2 as pb
from swayworker.codec import LogprobOf, Request, ViewKey, request_to_proto
from swayworker.hf.tiny import TinyModel

from tests.adapter_fixtures import TinyAdapters
from tests.helpers import plugin_worker

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
"""A test may build the module's references (a fresh worker per adapter) before its own work."""

PROMPTS = [
    ("The lighthouse keeper of Quillon Bay", " counts seventeen gulls"),
    ("In the morning, the keeper lit the lamp and", " watched the ships"),
]
TEXTS = [p + c for p, c in PROMPTS] + ["a"]
VIEWS: dict[str, Callable[[Any], Any]] = {
    "base": lambda b: b.as_base(),
    "ft": lambda b: b.as_finetuned(),
    "scaled_0.5": lambda b: b.as_scaled_adapter(0.5),
    "scaled_1.25": lambda b: b.as_scaled_adapter(1.25),
    "null_7": lambda b: b.as_null_adapter(7),
    "null_3_rank0.5": lambda b: b.as_null_adapter(3, init_scale=0.05, rank_scale=0.5),
}
SERIAL = swayhost.WorkerOptions(dynamic_batching=False)
"""Every call on its own (no coalescing across threads), so each is scored exactly as alone."""


def _spec(tiny: TinyModel, adapter: Path, worker: swayhost.WorkerOptions = SERIAL) -> Any:
    return swayhost.ModelSpec(
        base=str(tiny.base_dir), adapter=adapter, dtype="fp32", device="cpu", worker=worker
    )


def _view_answers(backend: Any, view: str) -> list[Any]:
    """Every operation on one view, as plain values compared for exact equality."""
    out: list[Any] = []
    with VIEWS[view](backend) as v:
        for prompt, completion in PROMPTS:
            out.append(v.logprob_of(prompt, completion))
            for k in (8, 10_000):
                dist = v.next_token_dist(prompt, top_k=k)
                out.append((dist.token_ids.tolist(), dist.logprobs.tolist(), dist.tail_logprob))
            out.append(v.generate(prompt, max_new_tokens=6))
            out.append(v.generate(prompt, max_new_tokens=6, temperature=0.8, top_p=0.9, seed=5))
        for text in TEXTS:
            rolling = v.rolling_logprob(text)
            out.append(
                (rolling.token_ids.tolist(), rolling.logprobs.tolist(), rolling.total_logprob)
            )
        out.append(v.logprob_of_many(PROMPTS))
    return out


def _answers(backend: Any) -> dict[str, list[Any]]:
    return {view: _view_answers(backend, view) for view in VIEWS}


@pytest.fixture(scope="module")
def fresh(tiny_model: TinyModel, tiny_adapters: TinyAdapters) -> dict[Path, Any]:
    """Per adapter: the answers and the description of a fresh worker built for it alone."""
    found = {}
    for adapter in tiny_adapters.checkpoints:
        with swayhost.build(_spec(tiny_model, adapter)) as backend:
            found[adapter] = (_answers(backend), backend.description)
    return found


def test_the_checkpoints_differ(fresh: dict[Path, Any]) -> None:
    """Otherwise the tests below could not tell one adapter from another."""
    fts = [answers["ft"][0] for answers, _ in fresh.values()]
    assert len(set(fts)) == len(fts)


def test_swap_on_a_warm_worker_equals_a_fresh_worker(
    tiny_model: TinyModel, tiny_adapters: TinyAdapters, fresh: dict[Path, Any]
) -> None:
    first, *others = tiny_adapters.checkpoints
    with swayhost.build(_spec(tiny_model, first)) as backend:
        pid = backend.pid
        supervisor = backend._supervisor
        for adapter in [*others, first]:
            spec = _spec(tiny_model, adapter)
            loaded = backend._conn.load(spec.to_proto(), timeout=60)
            want_answers, want = fresh[adapter]
            described = backend._conn.stub.Describe(pb.DescribeRequest())
            for got in (loaded, described):
                assert got.model.cache_identity == want.model.cache_identity
                assert got.model.adapter_path == str(adapter)
                assert got.loaded_spec == spec.to_proto()
                assert got.capabilities == want.capabilities
            supervisor.retain()
            with make_proxy(supervisor, spec, loaded) as swapped:
                assert swapped.cache_identity() == want.model.cache_identity
                request = request_to_proto(Request(ViewKey.ft(), LogprobOf("a", " b")))
                assert message_key(swapped.cache_identity(), request) == message_key(
                    want.model.cache_identity, request
                )
                assert _answers(swapped) == want_answers
        assert backend.pid == pid  # one process throughout: the base was kept
        log = "\n".join(backend._conn.endpoint.stderr_tail(400))
        # Same LoRA config: the swap rewrote the tensors in place, no module was injected.
        assert f"adapter {others[0]} overwrote {first} in place" in log


def test_a_failed_swap_keeps_the_adapter_it_had(
    tiny_model: TinyModel, tiny_adapters: TinyAdapters, fresh: dict[Path, Any]
) -> None:
    first = tiny_adapters.checkpoints[0]
    with swayhost.build(_spec(tiny_model, first)) as backend:
        for bad in (tiny_adapters.other_base, tiny_adapters.corrupt, tiny_adapters.ia3):
            with pytest.raises(swayhost.WorkerBadSpec, match=str(bad)):
                backend._conn.load(_spec(tiny_model, bad).to_proto(), timeout=60)
        assert _view_answers(backend, "ft") == fresh[first][0]["ft"]


def _interleaved(backends: list[Any], threads: int = 8) -> dict[tuple[int, str], list[Any]]:
    """Every (adapter, view) pair, shuffled, run from ``threads`` threads at once."""
    jobs = [(i, view) for i in range(len(backends)) for view in VIEWS]
    random.Random(17).shuffle(jobs)
    results: dict[tuple[int, str], list[Any]] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(offset: int) -> None:
        try:
            for i, view in jobs[offset::threads]:
                answers = _view_answers(backends[i], view)
                with lock:
                    results[i, view] = answers
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert errors == []
    return results


@contextmanager
def _many(tiny: TinyModel, adapters: list[Path], **options: Any) -> Iterator[list[Any]]:
    worker = replace(SERIAL, options=options) if options else SERIAL
    backends = swayhost.build_many(_spec(tiny, adapters[0], worker), adapters, worker=worker)
    try:
        yield backends
    finally:
        for backend in backends:
            backend.close()


def test_build_many_gives_full_backends_over_one_worker(
    tiny_model: TinyModel, tiny_adapters: TinyAdapters, fresh: dict[Path, Any]
) -> None:
    adapters = tiny_adapters.checkpoints
    with _many(tiny_model, adapters) as backends:
        assert len({backend.pid for backend in backends}) == 1
        for adapter, backend in zip(adapters, backends, strict=True):
            want = fresh[adapter][1]
            assert backend.load_error is None
            assert backend.cache_identity() == want.model.cache_identity
            assert backend.description.model.adapter_path == str(adapter)
            assert backend.__sway_protocols__ == tuple(
                p for p in want.capabilities.protocols if p != "PreflightCheckable"
            )
            assert backend.preflight_finite_check() == (True, "")
        assert backends[0].description.limits.max_resident_adapters == 8
        pid = backends[0].pid
        for backend in backends[:-1]:
            backend.close()
        assert backends[-1].pid == pid  # still served: the worker stops with the last backend
        assert _view_answers(backends[-1], "ft") == fresh[adapters[-1]][0]["ft"]


def test_resident_adapters_from_8_threads_equal_fresh_single_adapter_workers(
    tiny_model: TinyModel, tiny_adapters: TinyAdapters, fresh: dict[Path, Any]
) -> None:
    adapters = tiny_adapters.checkpoints
    with _many(tiny_model, adapters) as backends:
        results = _interleaved(backends)
        log = "\n".join(backends[0]._conn.endpoint.stderr_tail(400))
    for (i, view), answers in results.items():
        assert answers == fresh[adapters[i]][0][view], (adapters[i], view)
    assert "evicted adapter" not in log


def test_eviction_under_load_loses_nothing(
    tiny_model: TinyModel, tiny_adapters: TinyAdapters, fresh: dict[Path, Any]
) -> None:
    adapters = tiny_adapters.checkpoints
    with _many(tiny_model, adapters, max_resident_adapters="2") as backends:
        assert backends[0].description.limits.max_resident_adapters == 2
        results = _interleaved(backends)
        log = "\n".join(backends[0]._conn.endpoint.stderr_tail(2000))
    assert len(results) == len(adapters) * len(VIEWS)
    for (i, view), answers in results.items():
        assert answers == fresh[adapters[i]][0][view], (adapters[i], view)
    assert "evicted adapter" in log


def test_bad_adapters_fail_alone_naming_their_path(
    tiny_model: TinyModel, tiny_adapters: TinyAdapters, fresh: dict[Path, Any]
) -> None:
    good = tiny_adapters.checkpoints[:2]
    bad = [tiny_adapters.corrupt, tiny_adapters.other_base, tiny_adapters.ia3]
    # A bad adapter first: the worker starts with the first one that loads.
    adapters = [bad[0], good[0], bad[1], good[1], bad[2]]
    with _many(tiny_model, adapters) as backends:
        by_path = dict(zip(adapters, backends, strict=True))
        for path in bad:
            backend = by_path[path]
            assert isinstance(backend.load_error, swayhost.WorkerBadSpec)
            assert str(path) in str(backend.load_error)
            with (
                backend.as_finetuned() as view,
                pytest.raises(swayhost.WorkerBadSpec, match=str(path)),
            ):
                view.logprob_of("Once upon a time", " there was")
        assert "cannot be loaded on the base" in str(by_path[bad[1]].load_error)
        assert "IA3" in str(by_path[bad[2]].load_error)
        for path in good:
            assert by_path[path].load_error is None
            assert _answers(by_path[path]) == fresh[path][0]


def test_a_restart_loads_every_resident_adapter_again(
    tiny_model: TinyModel, tiny_adapters: TinyAdapters, fresh: dict[Path, Any]
) -> None:
    adapters = tiny_adapters.checkpoints
    with _many(tiny_model, adapters) as backends:
        first_pid = backends[0].pid
        backends[0]._conn.endpoint.kill()
        assert _view_answers(backends[2], "ft") == fresh[adapters[2]][0]["ft"]
        assert backends[0].pid != first_pid
        assert backends[0].stats().restarts == 1
        log = "\n".join(backends[0]._conn.endpoint.stderr_tail(400))
        for adapter in adapters[1:]:  # Loaded again at restart, before any call named them
            assert f"loaded adapter {adapter}" in log
        for adapter, backend in zip(adapters, backends, strict=True):
            assert _view_answers(backend, "null_7") == fresh[adapter][0]["null_7"]


def test_build_many_refuses_a_worker_without_resident_adapters(tiny_model: TinyModel) -> None:
    spec = swayhost.ModelSpec(
        base="toy", kind="custom", entry_point="user_backends:ToyModel", worker=plugin_worker()
    )
    with pytest.raises(swayhost.UnsupportedCapabilityError, match="resident_adapters"):
        swayhost.build_many(spec, [tiny_model.adapter_dir, tiny_model.nan_adapter_dir])


def test_a_worker_without_resident_adapters_refuses_a_request_naming_one(
    tiny_model: TinyModel,
) -> None:
    spec = swayhost.ModelSpec(
        base="toy", kind="custom", entry_point="user_backends:ToyModel", worker=plugin_worker()
    )
    with swayhost.build(spec) as backend:
        request = request_to_proto(Request(ViewKey.ft(), LogprobOf("a", " b")))
        request.adapter = str(tiny_model.adapter_dir)
        with pytest.raises(grpc.RpcError) as caught:
            backend._conn.stub.Score(request)
        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert "resident_adapters" in str(caught.value.details())
        assert str(tiny_model.adapter_dir) in str(caught.value.details())


def test_build_many_needs_an_adapter(tiny_model: TinyModel) -> None:
    with pytest.raises(ValueError, match="at least one adapter"):
        swayhost.build_many(_spec(tiny_model, tiny_model.adapter_dir), [])


def test_a_bad_resident_limit_is_a_spec_error(tiny_model: TinyModel) -> None:
    worker = replace(SERIAL, options={"max_resident_adapters": "0"})
    with pytest.raises(swayhost.WorkerBadSpec, match="max_resident_adapters='0'"):
        swayhost.build(_spec(tiny_model, tiny_model.adapter_dir, worker))


def test_mlx_swap_on_a_warm_worker_equals_a_fresh_worker(
    tiny_model: TinyModel, tiny_adapters: TinyAdapters, mlx_python: Path, tmp_path: Path
) -> None:
    """The MLX worker takes a checkpoint of the same LoRA layout in place, bit for bit."""
    worker = replace(SERIAL, python=str(mlx_python), options={"adapter_cache_dir": str(tmp_path)})
    first, second, third = tiny_adapters.checkpoints[:3]

    def mlx_spec(adapter: Path) -> Any:
        return replace(_spec(tiny_model, adapter, worker), kind="mlx")

    want = {}
    for adapter in (second, third):
        with swayhost.build(mlx_spec(adapter)) as backend:
            want[adapter] = (_answers(backend), backend.description)
    with swayhost.build(mlx_spec(first)) as backend:
        pid = backend.pid
        for adapter in (second, third):
            loaded = backend._conn.load(mlx_spec(adapter).to_proto(), timeout=60)
            assert loaded.model.cache_identity == want[adapter][1].model.cache_identity
            backend._supervisor.retain()
            with make_proxy(backend._supervisor, mlx_spec(adapter), loaded) as swapped:
                assert _answers(swapped) == want[adapter][0]
        assert backend.pid == pid
        log = "\n".join(backend._conn.endpoint.stderr_tail(400))
        assert f"adapter {second} took over the layers of {first} in place" in log
        # An adapter of another base cannot take the layers: the Load fails as a fresh one would.
        with pytest.raises(swayhost.WorkerBadSpec):
            backend._conn.load(mlx_spec(tiny_adapters.other_base).to_proto(), timeout=60)
