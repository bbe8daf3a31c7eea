"""The API worker against real servers on loopback, compared with the HF worker.

* ``mlx_lm.server`` (from the MLX env) on the tiny model: chat-style
  logprobs capped at 11, no echo. The worker offers generate and
  next_token_dist only, the proxy refuses logprob_of clearly, a larger
  ``top_k`` is clamped, and the numbers (with the server's real token ids)
  match the HF worker's base view.
* ``llama-cpp-python[server]`` on GGUFs of the SentencePiece tiny model:
  echo + logprobs, so every operation. One server holds the base, another
  the base with the adapter merged in; ``build_two_separate`` makes them one
  differential backend whose views match the HF worker's base and ft views.

llama.cpp prepends BOS like the HF tokenizer does, so both score the same
token sequence; its echo leaves out the BOS token itself, so its rolling
logprobs lack the first token's (given BOS) and are compared with the HF
worker's from the second token on.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import swayhost
from swayhost import ModelSpec, WorkerOptions
from swayhost.errors import UnsupportedCapabilityError
from swayworker.hf.tiny import TinyModel

from tests.llamacpp_fixtures import Ggufs, LlamaCpp, llama_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

SPM_VOCAB = 400
GREEDY = '{"repeat_penalty": 1.0}'
"""llama.cpp penalises repeats (1.1) by default, so its temperature-0 text is not argmax."""
PAIRS = [
    ("The river", " ran slowly past the old mill"),
    ("The lighthouse keeper of Quillon Bay", " counts seventeen gulls"),
    ("In the town there was", " a small library with a green door."),
]
TEXTS = [p + c for p, c in PAIRS]
PROMPTS = ["The river", "The lighthouse keeper of Quillon Bay", "A dog barked"]


def hf_spec(tiny: TinyModel) -> ModelSpec:
    return ModelSpec(
        kind="hf", base=str(tiny.base_dir), adapter=tiny.adapter_dir, dtype="fp32", device="cpu"
    )


def api_spec(url: str, model: str, **options: str) -> ModelSpec:
    worker = WorkerOptions(options={"retry_backoff_s": "0.05", **options})
    return ModelSpec(kind="api", base=model, endpoint=url, worker=worker)


# -- mlx_lm.server -------------------------------------------------------------


@pytest.fixture(scope="module")
def mlx_api(mlx_server: str, tiny_model: TinyModel) -> Iterator[swayhost.RemoteBackend]:
    spec = api_spec(mlx_server, str(tiny_model.base_dir), vocab_size="448")
    with swayhost.build(spec) as backend:
        yield backend


@pytest.fixture(scope="module")
def hf_bpe(tiny_model: TinyModel) -> Iterator[swayhost.RemoteBackend]:
    with swayhost.build(hf_spec(tiny_model)) as backend:
        yield backend


def test_mlx_lm_server_capabilities_follow_the_server(mlx_api: Any) -> None:
    caps = mlx_api.description.capabilities
    assert (caps.generate, caps.next_token_dist) == (True, True)
    assert (caps.logprob_of, caps.rolling_logprob) == (False, False)
    assert mlx_api.description.limits.max_top_k == 11
    with mlx_api.as_base() as view:
        with pytest.raises(UnsupportedCapabilityError, match="does not offer logprob_of"):
            view.logprob_of("The river", " ran")
        with pytest.raises(UnsupportedCapabilityError, match="rolling_logprob"):
            view.rolling_logprob("The river ran")


def test_mlx_lm_server_matches_the_hf_worker(mlx_api: Any, hf_bpe: Any) -> None:
    with mlx_api.as_base() as got, hf_bpe.as_base() as want:
        for prompt in PROMPTS:
            g, w = got.next_token_dist(prompt, top_k=8), want.next_token_dist(prompt, top_k=8)
            assert g.token_ids.tolist() == w.token_ids.tolist()  # the server's own ids
            np.testing.assert_allclose(g.logprobs, w.logprobs, rtol=0, atol=1e-4)
            assert g.tail_logprob == pytest.approx(w.tail_logprob, abs=1e-4)
        clamped = got.next_token_dist(PROMPTS[0], top_k=50)
        assert len(clamped.logprobs) == 11
        np.testing.assert_allclose(
            clamped.logprobs, want.next_token_dist(PROMPTS[0], top_k=11).logprobs, atol=1e-4
        )
        prompt = "The lighthouse"
        assert got.generate(prompt, max_new_tokens=12) == want.generate(prompt, max_new_tokens=12)


# -- llama.cpp ------------------------------------------------------------------


@pytest.fixture(scope="module")
def llama_urls(
    llama_cpp: LlamaCpp, spm_ggufs: Ggufs, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SimpleNamespace]:
    """Two servers: the base GGUF, and the GGUF with the adapter merged in."""
    logs = tmp_path_factory.mktemp("llama-server")
    with ExitStack() as stack:
        base = stack.enter_context(llama_server(llama_cpp, spm_ggufs.base, logs / "base.log"))
        ft = stack.enter_context(llama_server(llama_cpp, spm_ggufs.ft, logs / "ft.log"))
        yield SimpleNamespace(base=base, ft=ft)


@pytest.fixture(scope="module")
def llama_pair(llama_urls: SimpleNamespace) -> Iterator[Any]:
    """``build_two_separate``: base on one server, ft on the other, one differential backend."""
    options = {"vocab_size": str(SPM_VOCAB), "extra_body": GREEDY}
    models = SimpleNamespace(
        base=api_spec(llama_urls.base, "tiny-base", **options),
        ft=api_spec(llama_urls.ft, "tiny-ft", **options),
    )
    with swayhost.build_two_separate(models) as backend:
        yield backend


@pytest.fixture(scope="module")
def hf_spm(spm_tiny_model: TinyModel) -> Iterator[swayhost.RemoteBackend]:
    with swayhost.build(hf_spec(spm_tiny_model)) as backend:
        yield backend


def test_llama_cpp_offers_every_operation(llama_urls: SimpleNamespace) -> None:
    with swayhost.build(api_spec(llama_urls.base, "tiny")) as backend:
        caps = backend.description.capabilities
        assert (caps.logprob_of, caps.rolling_logprob, caps.next_token_dist, caps.generate) == (
            True,
            True,
            True,
            True,
        )
        assert backend.description.limits.max_top_k == 0
        assert backend.preflight_finite_check() == (True, "")


@pytest.mark.parametrize(("enter", "view"), [("as_base", "base"), ("as_finetuned", "ft")])
def test_llama_cpp_scores_like_the_hf_worker(
    enter: str, view: str, llama_pair: Any, hf_spm: Any
) -> None:
    with getattr(llama_pair, enter)() as got, getattr(hf_spm, enter)() as want:
        for prompt, completion in PAIRS:
            assert got.logprob_of(prompt, completion) == pytest.approx(
                want.logprob_of(prompt, completion), rel=1e-3
            )
        for text in TEXTS:
            g, w = got.rolling_logprob(text), want.rolling_logprob(text)
            assert g.num_tokens == w.num_tokens - 1  # the echo leaves out BOS
            np.testing.assert_allclose(g.logprobs, w.logprobs[1:], rtol=0, atol=1e-4)
        for prompt in PROMPTS:
            g, w = got.next_token_dist(prompt, top_k=8), want.next_token_dist(prompt, top_k=8)
            np.testing.assert_allclose(g.logprobs, w.logprobs, rtol=0, atol=1e-4)
            assert g.vocab_size == w.vocab_size == SPM_VOCAB
            assert g.tail_logprob == pytest.approx(w.tail_logprob, abs=1e-4)
        # llama.cpp keeps the SentencePiece space before the first new word;
        # the HF decode of the new tokens alone drops it.
        prompt = "The lighthouse"
        assert got.generate(prompt, max_new_tokens=12).lstrip() == want.generate(
            prompt, max_new_tokens=12
        )


def test_two_servers_differ_where_the_adapter_does(llama_pair: Any) -> None:
    prompt, completion = PAIRS[1]
    with llama_pair.as_base() as base:
        b = base.logprob_of(prompt, completion)
    with llama_pair.as_finetuned() as ft:
        f = ft.logprob_of(prompt, completion)
    assert f - b > 1.0
    assert llama_pair.preflight_finite_check() == (True, "")
