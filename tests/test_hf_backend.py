"""The worker's HF backend against the real dlm-sway HF backend, on the tiny model.

Single-item calls must reproduce sway's numbers exactly (same tokenization,
same forward pass, same fp32 math). Batched calls pad, so they may differ by
kernel reduction order only: logprobs within 1e-5, the same tail states, and
the same top-k ids except where two tokens are tied to within that tolerance.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from swayworker.hf.backend import HFDifferentialBackend
from swayworker.hf.tiny import ADAPTER_TEXT, MARKER, TinyModel, build_tiny_model

torch = pytest.importorskip("torch")
pytest.importorskip("peft")
sway_hf = pytest.importorskip("dlm_sway.backends.hf")
from dlm_sway.core.errors import ProbeError  # noqa: E402
from dlm_sway.core.model import ModelSpec  # noqa: E402

BATCH_TOLERANCE = 1e-5
SUM_RTOL = 1e-6
"""Sums of many per-token logprobs carry each token's error: bound them relatively."""
VOCAB = 448

PAIRS = [
    ("The river", " ran slowly past the old mill"),
    ("", "hello there"),
    ("The lighthouse keeper", " of Quillon Bay counts seventeen gulls"),
    ("In the town", " there was a small library with a green door."),
]
TEXTS = [
    "The river ran slowly past the old mill.",
    "",
    "a",
    "The lighthouse keeper of Quillon Bay counts seventeen gulls every morning.",
    "hello",
    "At night the lights in the windows went out one by one. " * 3,
]
PROMPTS = ["hello", "The river", "", "The lighthouse keeper of Quillon Bay", "A dog barked"]

ViewSpec = tuple[str, tuple[Any, ...], dict[str, Any]]
VIEWS: dict[str, ViewSpec] = {
    "base": ("as_base", (), {}),
    "ft": ("as_finetuned", (), {}),
    "scaled-0": ("as_scaled_adapter", (0.0,), {}),
    "scaled-0.5": ("as_scaled_adapter", (0.5,), {}),
    "scaled-1.25": ("as_scaled_adapter", (1.25,), {}),
    "null-7": ("as_null_adapter", (7,), {}),
    "null-7-half-rank": ("as_null_adapter", (7,), {"rank_scale": 0.5}),
}


def enter(backend: Any, view: str) -> AbstractContextManager[Any]:
    method, args, kwargs = VIEWS[view]
    return getattr(backend, method)(*args, **kwargs)  # type: ignore[no-any-return]


def spec_for(tiny: TinyModel, adapter: Path) -> Any:
    return ModelSpec(
        kind="hf", base=str(tiny.base_dir), adapter=adapter, dtype="fp32", device="cpu"
    )


def build_pair(tiny: TinyModel, adapter: Path) -> tuple[Any, HFDifferentialBackend]:
    spec = spec_for(tiny, adapter)
    reference = sway_hf.HuggingFaceDifferentialBackend(base_spec=spec, adapter_path=adapter)
    return reference, HFDifferentialBackend(base_spec=spec, adapter_path=adapter)


@pytest.fixture(scope="module")
def backends(tiny_model: TinyModel) -> Iterator[tuple[Any, HFDifferentialBackend]]:
    reference, ours = build_pair(tiny_model, tiny_model.adapter_dir)
    yield reference, ours
    reference.close()
    ours.close()


@pytest.fixture(scope="module")
def small_batch(tiny_model: TinyModel) -> Iterator[HFDifferentialBackend]:
    """Our backend with chunks of three, so every batch test spans chunks."""
    backend = HFDifferentialBackend(
        base_spec=spec_for(tiny_model, tiny_model.adapter_dir),
        adapter_path=tiny_model.adapter_dir,
        max_batch=3,
    )
    yield backend
    backend.close()


def outcome(call: Callable[[], Any]) -> Any:
    """The call's value, or the exception it raised (to compare failures too)."""
    try:
        return call()
    except Exception as exc:
        return exc


def tail_state(tail: float | None) -> str:
    if tail is None:
        return "none"
    return "zero" if tail == 0.0 else "finite"


def assert_same_error(ours: BaseException, reference: BaseException) -> None:
    assert type(ours) is type(reference)
    assert str(ours) == str(reference)


# --- the fixture itself ----------------------------------------------------


def test_tiny_build_is_fast_and_then_cached(tmp_path: Path) -> None:
    started = time.perf_counter()
    first = build_tiny_model(tmp_path)
    assert time.perf_counter() - started < 20.0
    marker = first.base_dir.parent / MARKER
    stamp = marker.stat().st_mtime_ns
    assert build_tiny_model(tmp_path) == first
    assert marker.stat().st_mtime_ns == stamp
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".staging-")]


def test_tiny_layout_loads_under_both_transformers_majors(tiny_model: TinyModel) -> None:
    config = json.loads((tiny_model.base_dir / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "PreTrainedTokenizerFast"
    assert not (tiny_model.adapter_dir / "tokenizer_config.json").exists()
    assert (tiny_model.nan_adapter_dir / "adapter_model.safetensors").is_file()


def test_tiny_cli_prints_the_cached_paths(tiny_model: TinyModel) -> None:
    out_dir = tiny_model.base_dir.parent.parent
    run = subprocess.run(
        [sys.executable, "-m", "swayworker.hf.tiny", str(out_dir)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert json.loads(run.stdout) == tiny_model.to_json()


def test_tokenizer_prepends_bos(backends: tuple[Any, HFDifferentialBackend]) -> None:
    reference, _ = backends
    tokenizer = reference._tokenizer
    assert tokenizer("").input_ids == [tokenizer.bos_token_id]
    assert tokenizer("hello").input_ids[0] == tokenizer.bos_token_id


def test_adapter_really_moves_the_model(backends: tuple[Any, HFDifferentialBackend]) -> None:
    _, ours = backends
    with ours.as_base() as view:
        base = view.rolling_logprob(ADAPTER_TEXT).total_logprob
    with ours.as_finetuned() as view:
        ft = view.rolling_logprob(ADAPTER_TEXT).total_logprob
    assert ft > base + 20.0


# --- parity with sway ----------------------------------------------------------


@pytest.mark.parametrize("view", list(VIEWS))
def test_every_operation_matches_sway_exactly(
    backends: tuple[Any, HFDifferentialBackend], view: str
) -> None:
    reference, ours = backends
    with enter(reference, view) as ref_view, enter(ours, view) as our_view:
        assert our_view.id == ref_view.id
        for prompt, completion in PAIRS:
            assert our_view.logprob_of(prompt, completion) == ref_view.logprob_of(
                prompt, completion
            )
        for text in TEXTS:
            expected, got = ref_view.rolling_logprob(text), our_view.rolling_logprob(text)
            assert np.array_equal(got.token_ids, expected.token_ids)
            assert np.array_equal(got.logprobs, expected.logprobs)
            assert got.logprobs.dtype == np.float32
            assert (got.num_tokens, got.total_logprob) == (
                expected.num_tokens,
                expected.total_logprob,
            )
        for prompt in PROMPTS:
            for top_k in (5, 10_000):
                expected = ref_view.next_token_dist(prompt, top_k=top_k)
                got = our_view.next_token_dist(prompt, top_k=top_k)
                assert np.array_equal(got.token_ids, expected.token_ids)
                assert np.array_equal(got.logprobs, expected.logprobs)
                assert got.vocab_size == expected.vocab_size == ours.vocab_size
                assert got.tail_logprob == expected.tail_logprob
        for temperature, seed in ((0.0, 0), (0.9, 3), (1.3, 11)):
            kwargs = {"max_new_tokens": 12, "temperature": temperature, "seed": seed}
            prompt = "The lighthouse keeper of"
            assert our_view.generate(prompt, top_p=0.9, **kwargs) == ref_view.generate(
                prompt, top_p=0.9, **kwargs
            )


class FixedLogits:
    """A stand-in model whose last-position logits are given, to reach every tail state."""

    def __init__(self, last: Any) -> None:
        self.last = last

    def __call__(self, input_ids: Any, **_: Any) -> Any:
        logits = self.last.expand(input_ids.shape[0], input_ids.shape[1], -1)
        return type("Output", (), {"logits": logits})()


@pytest.mark.parametrize(
    ("peak", "top_k", "state"),
    [(100.0, 1, "zero"), (100.0, VOCAB - 1, "zero"), (2.0, 1, "finite"), (2.0, 5, "finite")]
    + [(peak, k, "none") for peak in (2.0, 100.0) for k in (VOCAB, 10_000)],
)
def test_tail_states_match_sway(
    backends: tuple[Any, HFDifferentialBackend], peak: float, top_k: int, state: str
) -> None:
    """The tiny model is never sure enough for a zero tail, so feed both sides fixed logits."""
    from dlm_sway.backends._instrumentation import BackendInstrumentation
    from swayworker.hf.backend import HFView, _Scorer

    reference, _ = backends
    last = torch.zeros(VOCAB)
    last[7] = peak
    model = FixedLogits(last)
    tokenizer = reference._tokenizer
    ref_view = sway_hf._HFView("x", model, tokenizer, "cpu", 3, BackendInstrumentation())
    our_view = HFView("x", _Scorer(model, tokenizer, "cpu", max_batch=2))
    expected = ref_view.next_token_dist("hello", top_k=top_k)
    for got in (
        our_view.next_token_dist("hello", top_k=top_k),
        *our_view.next_token_dist_many(["hello", "The river ran", "a"], top_k),
    ):
        assert tail_state(got.tail_logprob) == tail_state(expected.tail_logprob) == state
        assert got.tail_logprob == expected.tail_logprob
        assert np.array_equal(got.token_ids, expected.token_ids)
        assert np.array_equal(got.logprobs, expected.logprobs)


def test_scaled_views_interpolate_between_base_and_ft(
    backends: tuple[Any, HFDifferentialBackend],
) -> None:
    _, ours = backends
    scores = {}
    for view in ("base", "ft", "scaled-0", "scaled-1.25"):
        with enter(ours, view) as active:
            scores[view] = active.rolling_logprob(ADAPTER_TEXT).total_logprob
    assert scores["scaled-0"] == pytest.approx(scores["base"], abs=1e-4)
    assert scores["scaled-1.25"] != pytest.approx(scores["ft"], abs=1e-2)


def test_null_views_repeat_for_a_seed(backends: tuple[Any, HFDifferentialBackend]) -> None:
    _, ours = backends
    totals = []
    for seed in (7, 7, 8):
        with ours.as_null_adapter(seed, rank_scale=0.5) as view:
            totals.append(view.rolling_logprob(ADAPTER_TEXT).total_logprob)
    assert totals[0] == totals[1] != totals[2]


def test_preflight_passes_like_sway(backends: tuple[Any, HFDifferentialBackend]) -> None:
    reference, ours = backends
    assert ours.preflight_finite_check() == reference.preflight_finite_check() == (True, "")


def test_nan_adapter_fails_preflight_like_sway(tiny_model: TinyModel) -> None:
    reference, ours = build_pair(tiny_model, tiny_model.nan_adapter_dir)
    verdict = ours.preflight_finite_check()
    assert verdict == reference.preflight_finite_check()
    assert verdict[0] is False
    assert verdict[1].startswith("ft view produced 8/8 non-finite logprob(s)")
    ours.close()
    reference.close()


def test_preflight_reports_an_active_view_like_sway(
    backends: tuple[Any, HFDifferentialBackend],
) -> None:
    reference, ours = backends
    with reference.as_finetuned():
        expected = reference.preflight_finite_check()
    with ours.as_finetuned():
        got = ours.preflight_finite_check()
    assert got[0] is expected[0] is False
    assert got[1].startswith("preflight forward pass raised RuntimeError:")


# --- errors ------------------------------------------------------------------


def test_zero_completion_tokens_is_sways_probe_error(
    backends: tuple[Any, HFDifferentialBackend],
) -> None:
    reference, ours = backends
    with reference.as_base() as ref_view:
        expected = outcome(lambda: ref_view.logprob_of("abc", ""))
    with ours.as_base() as our_view:
        got = outcome(lambda: our_view.logprob_of("abc", ""))
    assert isinstance(got, ProbeError)
    assert_same_error(got, expected)


@pytest.mark.parametrize("rank_scale", [0.0, -1.0, math.nan, math.inf])
def test_bad_rank_scale_is_a_value_error(
    backends: tuple[Any, HFDifferentialBackend], rank_scale: float
) -> None:
    for backend in backends:
        with (
            pytest.raises(ValueError, match="rank_scale must be positive and finite"),
            backend.as_null_adapter(1, rank_scale=rank_scale),
        ):
            pass


@pytest.mark.parametrize("outer", ["base", "ft", "scaled-0.5", "null-7"])
def test_only_one_view_at_a_time(backends: tuple[Any, HFDifferentialBackend], outer: str) -> None:
    for backend in backends:
        with enter(backend, outer), pytest.raises(RuntimeError, match="already active"):
            enter(backend, "ft").__enter__()
        with enter(backend, "base"):  # the failed entry left nothing claimed
            pass


# --- restoring state -----------------------------------------------------------


def lora_snapshot(backend: HFDifferentialBackend) -> dict[str, Any]:
    return {
        name: param.detach().clone()
        for name, param in backend._model.named_parameters()
        if "lora_" in name
    }


def test_null_view_restores_weights_after_an_exception(
    backends: tuple[Any, HFDifferentialBackend],
) -> None:
    _, ours = backends
    before = lora_snapshot(ours)
    with ours.as_finetuned() as view:
        expected = view.rolling_logprob(ADAPTER_TEXT).total_logprob
    with pytest.raises(KeyError), ours.as_null_adapter(5, init_scale=0.5):
        raise KeyError("boom")
    after = lora_snapshot(ours)
    assert before.keys() == after.keys()
    assert all(torch.equal(before[name], after[name]) for name in before)
    with ours.as_finetuned() as view:
        assert view.rolling_logprob(ADAPTER_TEXT).total_logprob == expected


def test_scaled_view_restores_scalings_after_an_exception(
    backends: tuple[Any, HFDifferentialBackend],
) -> None:
    _, ours = backends
    with ours.as_finetuned() as view:
        expected = view.rolling_logprob(ADAPTER_TEXT).total_logprob
    with pytest.raises(KeyError), ours.as_scaled_adapter(3.0):
        raise KeyError("boom")
    with ours.as_finetuned() as view:
        assert view.rolling_logprob(ADAPTER_TEXT).total_logprob == expected


# --- batched == unbatched --------------------------------------------------------

BATCH_VIEWS = ["base", "ft", "scaled-0.5", "null-7-half-rank"]
BATCH_PAIRS = [*PAIRS[:2], ("abc", ""), *PAIRS[2:], ("A", " b"), ("The baker sold", " warm bread")]
BATCH_TEXTS = [*TEXTS, "The town was quiet.", "apples"]
BATCH_PROMPTS = [*PROMPTS, "The baker sold warm bread and the smell of it", "x", "When the"]


@pytest.mark.parametrize("view", BATCH_VIEWS)
def test_logprob_of_many_equals_one_by_one(small_batch: HFDifferentialBackend, view: str) -> None:
    with enter(small_batch, view) as active:
        batched = active.logprob_of_many(BATCH_PAIRS)
        single = [outcome(partial(active.logprob_of, *pair)) for pair in BATCH_PAIRS]
    assert len(batched) == len(BATCH_PAIRS)
    for got, expected in zip(batched, single, strict=True):
        if isinstance(expected, BaseException):
            assert isinstance(got, BaseException)
            assert_same_error(got, expected)
        else:
            assert got == pytest.approx(expected, rel=SUM_RTOL, abs=BATCH_TOLERANCE)
    assert isinstance(batched[2], ProbeError)


@pytest.mark.parametrize("view", BATCH_VIEWS)
def test_rolling_logprob_many_equals_one_by_one(
    small_batch: HFDifferentialBackend, view: str
) -> None:
    with enter(small_batch, view) as active:
        batched = active.rolling_logprob_many(BATCH_TEXTS)
        single = [active.rolling_logprob(text) for text in BATCH_TEXTS]
    for got, expected in zip(batched, single, strict=True):
        assert np.array_equal(got.token_ids, expected.token_ids)
        assert got.num_tokens == expected.num_tokens
        assert got.logprobs.shape == expected.logprobs.shape
        np.testing.assert_allclose(got.logprobs, expected.logprobs, rtol=0, atol=BATCH_TOLERANCE)
        assert got.total_logprob == pytest.approx(
            expected.total_logprob, rel=SUM_RTOL, abs=BATCH_TOLERANCE
        )


def assert_same_ranking(got: Any, expected: Any, full: Any) -> None:
    """Same ids in the same order, except that near-ties may swap.

    Padding perturbs logprobs by ~1e-6, enough to reorder two tokens whose
    logprobs differ by less than that (the tiny model has such pairs deep in
    its vocabulary). A swapped id must be within tolerance of the one it
    displaced, judged on the unbatched full distribution.
    """
    assert len(set(got.tolist())) == len(got) == len(expected)
    logprob_of = dict(zip(full.token_ids.tolist(), full.logprobs.tolist(), strict=True))
    for position in np.flatnonzero(got != expected):
        displaced = logprob_of[int(expected[position])]
        assert logprob_of[int(got[position])] == pytest.approx(displaced, abs=BATCH_TOLERANCE)


@pytest.mark.parametrize("view", BATCH_VIEWS)
@pytest.mark.parametrize("top_k", [1, 5, VOCAB - 1, VOCAB, 10_000])
def test_next_token_dist_many_equals_one_by_one(
    small_batch: HFDifferentialBackend, view: str, top_k: int
) -> None:
    with enter(small_batch, view) as active:
        batched = active.next_token_dist_many(BATCH_PROMPTS, top_k)
        single = [active.next_token_dist(prompt, top_k=top_k) for prompt in BATCH_PROMPTS]
        full = [active.next_token_dist(prompt, top_k=VOCAB) for prompt in BATCH_PROMPTS]
    for got, expected, everything in zip(batched, single, full, strict=True):
        assert_same_ranking(got.token_ids, expected.token_ids, everything)
        np.testing.assert_allclose(got.logprobs, expected.logprobs, rtol=0, atol=BATCH_TOLERANCE)
        assert got.vocab_size == expected.vocab_size
        assert tail_state(got.tail_logprob) == tail_state(expected.tail_logprob)
        if expected.tail_logprob is not None:
            # log(1 - sum) is ill-conditioned when the tail is tiny: compare masses.
            got_mass, expected_mass = math.exp(got.tail_logprob), math.exp(expected.tail_logprob)
            assert got_mass == pytest.approx(expected_mass, abs=BATCH_TOLERANCE)


def test_batch_of_equal_lengths_matches_sway_exactly(
    backends: tuple[Any, HFDifferentialBackend],
) -> None:
    reference, ours = backends
    texts = ["hello", "hello", "hello"]
    with reference.as_finetuned() as ref_view:
        expected = ref_view.rolling_logprob("hello")
    with ours.as_finetuned() as view:
        for got in view.rolling_logprob_many(texts):
            np.testing.assert_allclose(got.logprobs, expected.logprobs, rtol=0, atol=1e-6)


def test_one_tokenizer_call_gives_each_text_its_own_ids(
    small_batch: HFDifferentialBackend,
) -> None:
    """A batch is tokenized in one call; each text must get the ids sway's own call gives it,
    and a text over the context fails alone."""
    scorer = small_batch._selected_adapter().scorer
    assert scorer is not None
    too_long = "word " * 400
    texts = [*BATCH_PROMPTS, *TEXTS, "", " leading space", "émigré ∑ 日本", too_long]
    encoded = scorer.encode_many(texts)
    for text in texts[:-1]:
        sways_call = scorer.tokenizer(text, return_tensors="pt").input_ids[0].tolist()
        assert encoded[text] == sways_call, text
    assert isinstance(encoded[too_long], ValueError)
    assert "this model's context holds 256" in str(encoded[too_long])
    with small_batch.as_base() as view:
        results = view.rolling_logprob_many(["a short text", too_long, "another text"])
    assert isinstance(results[1], ValueError)
    assert not isinstance(results[0], BaseException) and not isinstance(results[2], BaseException)


@pytest.mark.parametrize("top_k", [1, 64, VOCAB - 1, VOCAB, VOCAB + 10])
def test_a_chunk_of_next_token_jobs_finishes_as_each_would_alone(
    small_batch: HFDifferentialBackend, top_k: int
) -> None:
    """The chunk-wide finish gives, bit for bit, what the per-item finish gives each row
    (a NaN row and the whole-vocabulary top_k, whose tail is None, included)."""
    import torch

    scorer = small_batch._selected_adapter().scorer
    assert scorer is not None
    last = torch.randn(5, VOCAB, generator=torch.Generator().manual_seed(top_k)) * 4
    last[3] = float("nan")
    together = scorer._finish_next_tokens(last, top_k)
    assert len(together) == 5
    for row, got in enumerate(together):
        alone = scorer._finish_next_token(last[row : row + 1, None, :], top_k)
        np.testing.assert_array_equal(got.token_ids, alone.token_ids)
        np.testing.assert_array_equal(got.logprobs, alone.logprobs)
        assert got.token_ids.dtype == alone.token_ids.dtype == np.int64
        assert got.logprobs.dtype == alone.logprobs.dtype == np.float32
        assert got.vocab_size == alone.vocab_size == VOCAB
        assert (got.tail_logprob is None) == (top_k >= VOCAB)
        assert got.tail_logprob == alone.tail_logprob or row == 3  # NaN != NaN
    # a NaN mass is no tail, as alone
    assert together[3].tail_logprob == (None if top_k >= VOCAB else 0.0)


def test_a_batch_of_next_token_calls_takes_the_chunk_wide_finish(
    small_batch: HFDifferentialBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    scorer = small_batch._selected_adapter().scorer
    assert scorer is not None
    per_item = []
    alone = scorer._finish_next_token
    monkeypatch.setattr(scorer, "_finish_next_token", lambda *a: per_item.append(1) or alone(*a))
    with small_batch.as_finetuned() as view:
        prompts = [f"The river number {n} ran" for n in range(6)]  # two full chunks of 3
        dists = view.next_token_dist_many(prompts, top_k=8)
        assert not per_item
        view.next_token_dist(prompts[0], top_k=8)  # a lone call keeps sway's exact math
        assert len(per_item) == 1
    assert [d.token_ids.shape for d in dists] == [(8,)] * 6


def test_empty_batches_return_empty_lists(small_batch: HFDifferentialBackend) -> None:
    with small_batch.as_base() as view:
        assert view.logprob_of_many([]) == []
        assert view.rolling_logprob_many([]) == []
        assert view.next_token_dist_many([], 5) == []


# --- what the worker advertises --------------------------------------------------


def test_model_facts(backends: tuple[Any, HFDifferentialBackend], tiny_model: TinyModel) -> None:
    reference, ours = backends
    assert ours.cache_identity() == reference.cache_identity()
    assert ours.cache_identity() == f"hf:{tiny_model.base_dir}:{tiny_model.adapter_dir}"
    assert (ours.vocab_size, ours.device, ours.dtype) == (VOCAB, "cpu", "float32")
    assert ours.max_prompt_tokens == 256
    assert ours.max_batch == 64
    assert ours.safe_for_concurrent_views is False
    assert set(ours.framework_versions()) == {"torch", "transformers", "peft", "tokenizers"}


def test_max_batch_must_be_positive(
    small_batch: HFDifferentialBackend, tiny_model: TinyModel
) -> None:
    with pytest.raises(ValueError, match="max_batch"):
        small_batch.max_batch = 0
    assert small_batch.max_batch == 3
    with pytest.raises(ValueError, match="max_batch"):
        HFDifferentialBackend(
            base_spec=spec_for(tiny_model, tiny_model.adapter_dir),
            adapter_path=tiny_model.adapter_dir,
            max_batch=0,
        )


def test_dtype_and_device_resolution_follow_sway() -> None:
    from swayworker.hf.backend import _resolve_device, _resolve_dtype

    assert _resolve_device("auto", torch) == sway_hf._detect_device()
    assert _resolve_device("cuda:1", torch) == "cuda:1"
    for requested in ("auto", "fp16", "bf16", "fp32"):
        for device in ("cpu", "mps"):
            expected = sway_hf._resolve_dtype(requested, device)
            assert _resolve_dtype(requested, device, torch) == expected


def test_close_is_idempotent(tiny_model: TinyModel) -> None:
    backend = HFDifferentialBackend(
        base_spec=spec_for(tiny_model, tiny_model.adapter_dir),
        adapter_path=tiny_model.adapter_dir,
    )
    backend.close()
    backend.close()
    with pytest.raises(RuntimeError, match="closed"), backend.as_base():
        pass


def test_importing_the_backend_module_stays_light() -> None:
    code = (
        "import sys, swayworker.hf.backend, swayworker.hf.tiny; "
        "heavy = {'torch', 'transformers', 'peft'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
