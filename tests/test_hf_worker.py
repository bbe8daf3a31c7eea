"""The HF worker through the host, against dlm-sway's in-process HF backend."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import swayhost
from dlm_sway.backends.hf import HuggingFaceDifferentialBackend
from dlm_sway.core.model import ModelSpec as SwayModelSpec
from dlm_sway.core.scoring import (
    NullCalibratedBackend,
    PreflightCheckable,
    ScalableDifferentialBackend,
)
from swayworker.hf.tiny import TinyModel

pytestmark = pytest.mark.slow

PROMPTS = [
    ("The lighthouse keeper of Quillon Bay", " climbed the stairs"),
    ("Once upon a time", " there was a fox"),
    ("The", " quick brown fox jumps over the lazy dog"),
    ("In the morning, the keeper lit the lamp and", " watched the ships"),
]
TEXTS = [p + c for p, c in PROMPTS] + ["a"]


def _spec(tiny: TinyModel, adapter: Path | None = None) -> SwayModelSpec:
    return SwayModelSpec(
        kind="hf",
        base=str(tiny.base_dir),
        adapter=adapter or tiny.adapter_dir,
        dtype="fp32",
        device="cpu",
    )


@pytest.fixture(scope="module")
def reference(tiny_model: TinyModel) -> Iterator[HuggingFaceDifferentialBackend]:
    backend = HuggingFaceDifferentialBackend(
        base_spec=_spec(tiny_model), adapter_path=tiny_model.adapter_dir
    )
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def remote(tiny_model: TinyModel) -> Iterator[swayhost.RemoteBackend]:
    with swayhost.build(_spec(tiny_model)) as backend:
        yield backend


VIEW_NAMES = ["base", "ft", "scaled_0.5", "scaled_1.25", "null_7", "null_7_rank0.5"]


def _views(backend: Any) -> dict[str, Any]:
    return {
        "base": lambda: backend.as_base(),
        "ft": lambda: backend.as_finetuned(),
        "scaled_0.5": lambda: backend.as_scaled_adapter(0.5),
        "scaled_1.25": lambda: backend.as_scaled_adapter(1.25),
        "null_7": lambda: backend.as_null_adapter(7),
        "null_7_rank0.5": lambda: backend.as_null_adapter(7, rank_scale=0.5),
    }


def _assert_dist_equal(got: Any, want: Any, atol: float = 1e-6) -> None:
    assert got.token_ids.tolist() == want.token_ids.tolist()
    np.testing.assert_allclose(got.logprobs, want.logprobs, rtol=0, atol=atol)
    assert got.vocab_size == want.vocab_size
    if want.tail_logprob is None:
        assert got.tail_logprob is None
    else:
        assert got.tail_logprob == pytest.approx(want.tail_logprob, abs=atol)


@pytest.mark.parametrize("view", VIEW_NAMES)
def test_every_view_matches_in_process_sway(
    view: str, reference: HuggingFaceDifferentialBackend, remote: swayhost.RemoteBackend
) -> None:
    with _views(reference)[view]() as ref, _views(remote)[view]() as got:
        assert got.id == ref.id
        for prompt, completion in PROMPTS:
            assert got.logprob_of(prompt, completion) == pytest.approx(
                ref.logprob_of(prompt, completion), abs=1e-6
            )
            for k in (8, 10_000):
                _assert_dist_equal(
                    got.next_token_dist(prompt, top_k=k), ref.next_token_dist(prompt, top_k=k)
                )
        for text in TEXTS:
            r_got, r_want = got.rolling_logprob(text), ref.rolling_logprob(text)
            assert r_got.token_ids.tolist() == r_want.token_ids.tolist()
            np.testing.assert_allclose(r_got.logprobs, r_want.logprobs, rtol=0, atol=1e-6)
            assert r_got.num_tokens == r_want.num_tokens
            assert r_got.total_logprob == pytest.approx(r_want.total_logprob, abs=1e-5)


def test_generate_matches_greedy_and_seeded(
    reference: HuggingFaceDifferentialBackend, remote: swayhost.RemoteBackend
) -> None:
    for enter in ("as_base", "as_finetuned"):
        with getattr(reference, enter)() as ref, getattr(remote, enter)() as got:
            for kwargs in ({}, {"temperature": 0.8, "top_p": 0.9, "seed": 3}):
                want = ref.generate("The lighthouse", max_new_tokens=12, **kwargs)
                assert got.generate("The lighthouse", max_new_tokens=12, **kwargs) == want


def test_adapter_really_moves_the_model(remote: swayhost.RemoteBackend) -> None:
    prompt, completion = PROMPTS[0]
    with remote.as_base() as base:
        b = base.logprob_of(prompt, completion)
    with remote.as_finetuned() as ft:
        f = ft.logprob_of(prompt, completion)
    assert f - b > 1.0


def test_protocols_and_description(remote: swayhost.RemoteBackend) -> None:
    assert isinstance(remote, ScalableDifferentialBackend)
    assert isinstance(remote, NullCalibratedBackend)
    assert isinstance(remote, PreflightCheckable)
    d = remote.description
    assert d.worker_kind == "hf" and d.capabilities.batch
    assert d.model.device == "cpu" and "float32" in d.model.dtype
    assert d.model.vocab_size > 0 and d.limits.max_batch > 0
    for framework in ("torch", "transformers", "peft"):
        assert framework in d.framework_versions
    assert remote.cache_identity().startswith("hf:")


def test_preflight_verdicts_match(
    tiny_model: TinyModel, remote: swayhost.RemoteBackend, reference: HuggingFaceDifferentialBackend
) -> None:
    assert remote.preflight_finite_check() == reference.preflight_finite_check() == (True, "")
    nan_ref = HuggingFaceDifferentialBackend(
        base_spec=_spec(tiny_model, tiny_model.nan_adapter_dir),
        adapter_path=tiny_model.nan_adapter_dir,
    )
    try:
        want = nan_ref.preflight_finite_check()
    finally:
        nan_ref.close()
    with swayhost.build(_spec(tiny_model, tiny_model.nan_adapter_dir)) as broken:
        got = broken.preflight_finite_check()
    assert got == want and got[0] is False and "non-finite" in got[1]


def test_errors_match_in_process(remote: swayhost.RemoteBackend) -> None:
    from dlm_sway.core.errors import ProbeError

    with remote.as_finetuned() as view:
        with pytest.raises(ProbeError, match="completion"):
            view.logprob_of("hello", "")
        with pytest.raises(ValueError, match="top_k"):
            view.next_token_dist("hello", top_k=-1)
    with (
        pytest.raises(ValueError, match="rank_scale must be positive"),
        remote.as_null_adapter(1, rank_scale=float("nan")),
    ):
        pass


def test_batches_equal_unary_even_past_max_batch(remote: swayhost.RemoteBackend) -> None:
    prompts = [f"{p} {i}" for i in range(3) for p, _ in PROMPTS] * 6  # 72 > max_batch 64
    assert len(prompts) > remote.description.limits.max_batch
    with remote.as_finetuned() as view:
        batched = view.next_token_dist_many(prompts, top_k=16)
        for prompt, got in zip(prompts[:12], batched[:12], strict=True):
            _assert_dist_equal(got, view.next_token_dist(prompt, top_k=16), atol=1e-5)
        pairs = [(p, c) for p, c in PROMPTS] + [("x", "")]
        lps = view.logprob_of_many(pairs, return_exceptions=True)
        assert isinstance(lps[-1], Exception)
        for (p, c), got_lp in zip(PROMPTS, lps, strict=False):
            assert got_lp == pytest.approx(view.logprob_of(p, c), abs=1e-5)
    assert len(batched) == len(prompts)


def test_eight_threads_mixing_views_get_sequential_answers(remote: swayhost.RemoteBackend) -> None:
    assert remote.safe_for_concurrent_views
    views = list(_views(remote).items())
    assert [name for name, _ in views] == VIEW_NAMES
    jobs = [(name, p, c) for name, _ in views for p, c in PROMPTS]
    expected: dict[tuple[str, str, str], float] = {}
    for name, enter in views:
        with enter() as view:
            for p, c in PROMPTS:
                expected[(name, p, c)] = view.logprob_of(p, c)
    results: dict[tuple[str, str, str], float] = {}
    errors: list[BaseException] = []
    lookup = dict(views)

    def worker(offset: int) -> None:
        try:
            for i in range(len(jobs)):
                name, p, c = jobs[(i + offset) % len(jobs)]
                with lookup[name]() as view:
                    results[(name, p, c, offset)] = view.logprob_of(p, c)  # type: ignore[index]
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k * 3,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert len(results) == 8 * len(jobs)
    for (name, p, c, _), value in results.items():  # type: ignore[misc]
        assert value == expected[(name, p, c)]


def _threads_after_batches(backend: swayhost.RemoteBackend) -> tuple[int, int]:
    """The worker's thread count after one lone call, then after three batches."""
    worker = psutil.Process(backend.pid)
    with backend.as_finetuned() as view:
        view.next_token_dist("warm up the model thread's team", top_k=4)
        before = worker.num_threads()
        for round_ in range(3):
            view.next_token_dist_many([f"{p} {round_}" for p, _ in PROMPTS] * 4, top_k=4)
    return before, worker.num_threads()


def test_the_tokenizer_runs_no_thread_pool_unless_the_user_asks(tiny_model: TinyModel) -> None:
    """A batch's tokenizing stays on the model thread; ``TOKENIZERS_PARALLELISM`` still rules.

    A fast tokenizer's pool would be one more team of threads on the cores
    torch's team spins on (swayworker.hf.__main__.TOKENIZER_THREADS_ENV).
    """
    spec = _spec(tiny_model)
    with swayhost.build(spec) as default:
        before, after = _threads_after_batches(default)
    assert after == before
    asked = swayhost.WorkerOptions(env={"TOKENIZERS_PARALLELISM": "true"})
    with swayhost.build(spec, worker=asked) as pooled:
        _, pooled_after = _threads_after_batches(pooled)
    assert pooled_after > after  # the pool's threads (started by the lone call already)
