"""The MLX worker (its own env) against the HF worker on the same tiny model + PEFT adapter.

Both run out of process behind the host, in fp32 on the CPU. The MLX
worker gets the PEFT adapter directory as is. Agreement required (issue
6): next_token_dist ids equal and logprobs within 1e-4; logprob_of and
rolling totals within 1e-3 relative; equal greedy generations; the same
preflight verdicts. Null views draw from MLX's generator, not torch's, so
they agree with the HF worker in distribution only (checked loosely), and
exactly with themselves for a seed.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import swayhost
from swayhost import ModelSpec, WorkerOptions
from swayhost import sway as host_sway
from swayworker.hf.tiny import TinyModel

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

PAIRS = [
    ("The lighthouse keeper of Quillon Bay", " counts seventeen gulls"),
    ("The river", " ran slowly past the old mill"),
    ("In the town", " there was a small library with a green door."),
    ("", "hello there"),
]
TEXTS = [p + c for p, c in PAIRS] + ["a", "At night the lights in the windows went out one by one."]
PROMPTS = ["hello", "The river", "The lighthouse keeper of Quillon Bay", "A dog barked"]
TOP_K = 16
VIEWS = {
    "base": ("as_base", ()),
    "ft": ("as_finetuned", ()),
    "scaled-0.5": ("as_scaled_adapter", (0.5,)),
    "scaled-1.25": ("as_scaled_adapter", (1.25,)),
}


def spec(kind: str, tiny: TinyModel, adapter: Path, worker: WorkerOptions) -> ModelSpec:
    return ModelSpec(
        kind=kind,
        base=str(tiny.base_dir),
        adapter=adapter,
        dtype="fp32",
        device="cpu",
        worker=worker,
    )


def mlx_worker(python: Path, cache: Path) -> WorkerOptions:
    return WorkerOptions(python=str(python), options={"adapter_cache_dir": str(cache)})


@pytest.fixture(scope="module")
def adapter_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mlx-adapters")


@pytest.fixture(scope="module")
def mlx(
    tiny_model: TinyModel, mlx_python: Path, adapter_cache: Path
) -> Iterator[swayhost.RemoteBackend]:
    worker = mlx_worker(mlx_python, adapter_cache)
    with swayhost.build(spec("mlx", tiny_model, tiny_model.adapter_dir, worker)) as backend:
        yield backend


@pytest.fixture(scope="module")
def hf(tiny_model: TinyModel) -> Iterator[swayhost.RemoteBackend]:
    with swayhost.build(spec("hf", tiny_model, tiny_model.adapter_dir, WorkerOptions())) as backend:
        yield backend


def enter(backend: Any, view: str) -> Any:
    method, args = VIEWS[view]
    return getattr(backend, method)(*args)


@pytest.mark.parametrize("view", list(VIEWS))
def test_mlx_agrees_with_hf(view: str, mlx: Any, hf: Any) -> None:
    with enter(mlx, view) as got, enter(hf, view) as want:
        for prompt in PROMPTS:
            g, w = (
                got.next_token_dist(prompt, top_k=TOP_K),
                want.next_token_dist(prompt, top_k=TOP_K),
            )
            assert g.token_ids.tolist() == w.token_ids.tolist()
            np.testing.assert_allclose(g.logprobs, w.logprobs, rtol=0, atol=1e-4)
            assert g.vocab_size == w.vocab_size == 448
            assert g.tail_logprob == pytest.approx(w.tail_logprob, abs=1e-4)
        for prompt, completion in PAIRS:
            assert got.logprob_of(prompt, completion) == pytest.approx(
                want.logprob_of(prompt, completion), rel=1e-3
            )
        for text in TEXTS:
            g, w = got.rolling_logprob(text), want.rolling_logprob(text)
            assert g.token_ids.tolist() == w.token_ids.tolist()
            np.testing.assert_allclose(g.logprobs, w.logprobs, rtol=0, atol=1e-4)
            assert g.total_logprob == pytest.approx(w.total_logprob, rel=1e-3, abs=1e-6)


@pytest.mark.parametrize("view", ["base", "ft"])
def test_greedy_generation_is_the_same_text(view: str, mlx: Any, hf: Any) -> None:
    with enter(mlx, view) as got, enter(hf, view) as want:
        for prompt in ("The lighthouse", "In the town"):
            assert got.generate(prompt, max_new_tokens=16) == want.generate(
                prompt, max_new_tokens=16
            )


def test_sampling_is_seeded(mlx: Any) -> None:
    with mlx.as_finetuned() as view:
        texts = [
            view.generate("The", max_new_tokens=12, temperature=1.0, top_p=0.9, seed=s)
            for s in (1, 1, 2)
        ]
    assert texts[0] == texts[1]


def test_null_views_repeat_restore_and_match_hf_in_size(mlx: Any, hf: Any) -> None:
    prompt, completion = PAIRS[0]
    with mlx.as_finetuned() as ft:
        before = ft.logprob_of(prompt, completion)
    shifts: dict[str, list[float]] = {}
    for name, backend in (("mlx", mlx), ("hf", hf)):
        with backend.as_base() as base:
            b = base.logprob_of(prompt, completion)
        shifts[name] = []
        for seed in range(4):
            with backend.as_null_adapter(seed) as null:
                shifts[name].append(abs(null.logprob_of(prompt, completion) - b))
    with mlx.as_null_adapter(0) as again:
        first = again.logprob_of(prompt, completion)
    with mlx.as_null_adapter(0) as again:
        assert again.logprob_of(prompt, completion) == first, "a seed repeats exactly"
    with mlx.as_null_adapter(0, rank_scale=4.0) as wide:
        assert wide.logprob_of(prompt, completion) != first, "rank_scale scales the noise"
    with mlx.as_finetuned() as ft:
        assert ft.logprob_of(prompt, completion) == before, "the trained weights are back"
    assert len(set(shifts["mlx"])) == 4, "different seeds give different noise"
    ratio = np.mean(shifts["mlx"]) / np.mean(shifts["hf"])
    assert 0.25 < ratio < 4, f"null-view effect sizes differ too much: {shifts}"


def test_preflight_and_protocols(mlx: Any, hf: Any) -> None:
    assert mlx.preflight_finite_check() == hf.preflight_finite_check() == (True, "")
    assert mlx.__sway_protocols__ == hf.__sway_protocols__
    # what sway's checks see of swayhost.sway:MLX before its worker is up
    served = tuple(name for name in host_sway.OPTIONAL_METHODS if hasattr(mlx, name))
    assert host_sway.BUILT_IN_METHODS["mlx"] == served
    described = mlx.description
    assert described.worker_kind == "mlx"
    assert "mlx" in described.framework_versions and "torch" not in described.framework_versions
    assert described.model.vocab_size == 448 and described.model.dtype == "float32"


def test_nan_adapter_fails_preflight_like_hf(
    tiny_model: TinyModel, mlx_python: Path, adapter_cache: Path
) -> None:
    nan = tiny_model.nan_adapter_dir
    worker = mlx_worker(mlx_python, adapter_cache)
    with (
        swayhost.build(spec("mlx", tiny_model, nan, worker)) as got,
        swayhost.build(spec("hf", tiny_model, nan, WorkerOptions())) as want,
    ):
        verdict = got.preflight_finite_check()
        assert verdict == want.preflight_finite_check()
        assert verdict[0] is False and "ft view produced" in verdict[1]
        with got.as_base() as base:
            assert math.isfinite(base.logprob_of("hello", " there")), "base skips the NaN delta"


def test_a_second_worker_reuses_the_converted_adapter(
    tiny_model: TinyModel,
    mlx_python: Path,
    adapter_cache: Path,
    mlx: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert len(list(adapter_cache.glob("v*/*/COMPLETE.json"))) >= 1
    worker = mlx_worker(mlx_python, adapter_cache)
    with caplog.at_level(logging.INFO, logger="swayhost.worker"):
        swayhost.build(spec("mlx", tiny_model, tiny_model.adapter_dir, worker)).close()
    assert any("converted copy found" in r.getMessage() for r in caplog.records)


def test_an_unconvertible_adapter_is_a_spec_error(
    tiny_model: TinyModel, mlx_python: Path, adapter_cache: Path, tmp_path: Path
) -> None:
    import json
    import shutil

    dora = Path(shutil.copytree(tiny_model.adapter_dir, tmp_path / "dora"))
    config = json.loads((dora / "adapter_config.json").read_text())
    (dora / "adapter_config.json").write_text(json.dumps({**config, "use_dora": True}))
    with pytest.raises(ValueError, match="DoRA"):
        swayhost.build(spec("mlx", tiny_model, dora, mlx_worker(mlx_python, adapter_cache)))


def test_without_mlx_the_worker_says_what_to_install(tiny_model: TinyModel) -> None:
    """The project's own env has no MLX: the worker answers with the hint, it does not crash.

    The host raises what an in-process backend would (ImportError); the
    wire reason was BACKEND_NOT_AVAILABLE.
    """
    hint = 'pip install "mlx[cpu]" mlx-lm'
    with pytest.raises(ImportError, match=re.escape(hint)):
        swayhost.build(spec("mlx", tiny_model, tiny_model.adapter_dir, WorkerOptions()))


def test_batches_are_padded_forward_passes_equal_to_unary_calls(mlx: Any) -> None:
    """ScoreBatch runs right-padded batches (causal attention needs no mask): same numbers
    as one call per input within float noise, and a bad input fails alone."""
    assert mlx.description.capabilities.batch and mlx.description.limits.max_batch == 64
    # Inputs no other test sends, so the host's result cache cannot answer them.
    pairs = [(p + " (batched)", c) for p, c in PAIRS[:3]] + [("The river", "")]
    texts = [t + " Once more." for t in TEXTS]
    prompts = [p + " again" for p in PROMPTS]
    before = mlx.stats().batch_rpcs
    with mlx.as_finetuned() as view:
        got_pairs = view.logprob_of_many(pairs, return_exceptions=True)
        got_texts = view.rolling_logprob_many(texts)
        got_dists = view.next_token_dist_many(prompts, top_k=TOP_K)
    assert mlx.stats().batch_rpcs == before + 3
    assert isinstance(got_pairs[-1], ValueError), "no completion tokens: that item alone fails"
    with mlx.as_finetuned() as view:
        for (prompt, completion), got in zip(pairs[:3], got_pairs, strict=False):
            assert got == pytest.approx(view.logprob_of(prompt, completion), abs=1e-4)
        for text, got in zip(texts, got_texts, strict=True):
            want = view.rolling_logprob(text)
            assert got.token_ids.tolist() == want.token_ids.tolist()
            np.testing.assert_allclose(got.logprobs, want.logprobs, rtol=0, atol=1e-5)
        for prompt, got in zip(prompts, got_dists, strict=True):
            want = view.next_token_dist(prompt, top_k=TOP_K)
            assert got.token_ids.tolist() == want.token_ids.tolist()
            np.testing.assert_allclose(got.logprobs, want.logprobs, rtol=0, atol=1e-5)


def test_an_architecture_mlx_lm_lacks_is_refused_by_name(
    tiny_model: TinyModel, mlx_python: Path, adapter_cache: Path, tmp_path: Path
) -> None:
    import json
    import shutil

    base = Path(shutil.copytree(tiny_model.base_dir, tmp_path / "base"))
    config = json.loads((base / "config.json").read_text())
    (base / "config.json").write_text(json.dumps({**config, "model_type": "made_up_arch"}))
    other = ModelSpec(
        kind="mlx",
        base=str(base),
        adapter=tiny_model.adapter_dir,
        dtype="fp32",
        device="cpu",
        worker=mlx_worker(mlx_python, adapter_cache),
    )
    with pytest.raises(ValueError, match=r"'made_up_arch'.*hf worker"):
        swayhost.build(other)
