"""The API backend against recorded OpenAI, vLLM, Ollama and mlx_lm.server shapes.

Fast: a scripted loopback server (``tests.fake_completions``) replays the
recorded bodies under ``tests/data/api``, including malformed ones.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from typing import Any
from unittest import mock

import numpy as np
import pytest
import swayhost
from dlm_sway.core.errors import ProbeError
from swayhost import ModelSpec, WorkerOptions
from swayplugin.v1 import backend_pb2 as pb
from swayworker.api.backend import ApiBackend, api_key_from_env
from swayworker.api.client import ApiError, CompletionsClient, completions_url
from swayworker.api.responses import echoed_tokens
from swayworker.servicer import BackendServicer

from tests.fake_completions import FakeCompletions, fake_server, recorded

FULL_OPS = ("generate", "next_token_dist", "logprob_of", "rolling_logprob")


@pytest.fixture(params=["openai", "vllm"])
def legacy(request: pytest.FixtureRequest) -> Iterator[FakeCompletions]:
    with fake_server(request.param) as server:
        yield server


def backend_for(
    server: FakeCompletions, *, key: str | None = None, retries: int = 2, **kwargs: Any
) -> ApiBackend:
    client = CompletionsClient(server.url, api_key=key, max_retries=retries, backoff_s=0.001)
    return ApiBackend(client, model="tiny", endpoint=server.url, **kwargs)


def test_echo_servers_offer_every_operation_and_report_their_cap(
    legacy: FakeCompletions,
) -> None:
    backend = backend_for(legacy)
    assert set(backend.operations()) == set(FULL_OPS)
    assert backend.max_top_k == legacy.flavor.cap
    requests = len(legacy.seen)
    assert requests <= 12, "probing must stay a handful of requests"


def test_logprob_of_sums_the_tokens_past_the_prompts_last_character(
    legacy: FakeCompletions,
) -> None:
    backend = backend_for(legacy)
    with backend.as_finetuned() as view:
        # echo: The|0  river|3  ran|9  slowly|13  (past|20: generated, dropped)
        assert view.logprob_of("The river", " ran slowly") == pytest.approx(-3.125 - 1.5)
        # A token straddling the boundary (" river" starts before char 7) is prompt.
        assert view.logprob_of("The riv", "er ran slowly") == pytest.approx(-3.125 - 1.5)
    sent = legacy.seen[-1].body
    assert sent["prompt"] == "The river ran slowly" and sent["echo"] is True


def test_rolling_logprob_drops_the_first_token_and_the_generated_one(
    legacy: FakeCompletions,
) -> None:
    with backend_for(legacy).as_base() as view:
        rolling = view.rolling_logprob("The river ran slowly")
    assert rolling.num_tokens == 4
    np.testing.assert_allclose(rolling.logprobs, [-6.25, -3.125, -1.5])
    assert rolling.total_logprob == pytest.approx(-10.875)
    assert rolling.token_ids.tolist() == [0, 1, 2, 3]


def test_next_token_dist_sorts_clamps_and_computes_the_tail(
    legacy: FakeCompletions, caplog: pytest.LogCaptureFixture
) -> None:
    backend = backend_for(legacy, vocab_size=448)
    cap = legacy.flavor.cap
    with caplog.at_level(logging.WARNING, logger="swayworker"), backend.as_base() as view:
        dist = view.next_token_dist("The river ran slowly", top_k=cap + 3)
        view.next_token_dist("The river ran slowly", top_k=cap + 3)
    assert len(dist.logprobs) == cap
    assert legacy.seen[-1].body["logprobs"] == cap
    assert np.all(np.diff(dist.logprobs) <= 0)
    assert dist.token_ids.tolist() == list(range(cap))  # synthesized, as in sway
    assert dist.vocab_size == 448
    mass = float(np.exp(dist.logprobs.astype(np.float64)).sum())
    assert dist.tail_logprob == pytest.approx(math.log(1 - mass))
    clamp_logs = [r for r in caplog.records if "clamped" in r.getMessage()]
    assert len(clamp_logs) == 1, "a clamp is logged once per requested top_k"


def test_the_wire_result_reports_the_clamp() -> None:
    with fake_server("openai") as server:
        servicer = BackendServicer(
            backend=backend_for(server), loader=None, worker_kind="api", on_shutdown=lambda: None
        )
        request = pb.ScoreRequest(view=pb.View(ft=pb.FinetunedView()))
        request.next_token_dist.prompt = "The river"
        request.next_token_dist.top_k = 50
        response = servicer.Score(request, mock.Mock())
        assert response.dist.clamped_top_k == 5
        request.next_token_dist.top_k = 3
        assert not servicer.Score(request, mock.Mock()).dist.clamped_top_k
        assert servicer.describe().limits.max_top_k == 5


def test_without_a_vocab_size_the_tail_is_unknown_like_sway() -> None:
    with fake_server("openai") as server, backend_for(server).as_base() as view:
        dist = view.next_token_dist("The river", top_k=3)
    assert dist.tail_logprob is None and dist.vocab_size == 3


def test_max_prompt_tokens_is_advertised_and_the_servers_count_enforces_it() -> None:
    """The recorded answers count 3 (top) and 4 (echo) prompt tokens."""
    with fake_server("openai") as server:
        backend = backend_for(server, max_prompt_tokens=3)
        servicer = BackendServicer(
            backend=backend, loader=None, worker_kind="api", on_shutdown=lambda: None
        )
        assert servicer.describe().limits.max_prompt_tokens == 3
        with backend.as_base() as view:
            assert view.next_token_dist("The river", top_k=2).logprobs.size == 2
            with pytest.raises(ValueError, match="prompt is 4 tokens; this model's context"):
                view.rolling_logprob("The river bank")
    with fake_server("openai") as server, backend_for(server).as_base() as view:
        assert view.rolling_logprob("The river bank").num_tokens > 0  # no limit: not checked


def test_mlx_lm_server_speaks_chat_logprobs_without_echo() -> None:
    with fake_server("mlx_lm") as server:
        backend = backend_for(server)
        assert set(backend.operations()) == {"generate", "next_token_dist"}
        assert backend.max_top_k == 11
        with backend.as_base() as view:
            dist = view.next_token_dist("The river", top_k=4)
        assert server.seen[-1].body["top_logprobs"] == 4
    assert dist.token_ids.tolist() == [262, 290, 301, 377]  # the server's own ids, re-sorted
    np.testing.assert_allclose(dist.logprobs, [-0.75, -1.5, -2.25, -3.0])


def test_ollama_offers_generate_only() -> None:
    with fake_server("ollama") as server:
        backend = backend_for(server)
        assert backend.operations() == ("generate",)
        with backend.as_finetuned() as view:
            text = view.generate("The river ran", max_new_tokens=4, temperature=0.5, seed=3)
        sent = server.seen[-1].body
        assert backend.preflight_finite_check() == (True, "")
    assert text == " past the old mill"
    assert (sent["max_tokens"], sent["temperature"], sent["seed"]) == (4, 0.5, 3)


@pytest.mark.parametrize(
    "body",
    [
        "malformed_no_choices",
        "malformed_length_mismatch",
        "malformed_logprob_type",
        "malformed_choices_null",
    ],
)
def test_malformed_answers_raise_a_clear_value_error(body: str) -> None:
    with fake_server("openai") as server:
        backend = backend_for(server)
        for call in (
            lambda v: v.logprob_of("The river", " ran"),
            lambda v: v.rolling_logprob("The river ran"),
            lambda v: v.next_token_dist("The river", top_k=2),
        ):
            server.queue(200, recorded(body))
            with backend.as_base() as view, pytest.raises(ProbeError) as info:
                call(view)
            assert "malformed completions response" in str(info.value)


def test_non_json_and_error_bodies_are_quoted_not_crashed_on() -> None:
    with fake_server("openai") as server:
        backend = backend_for(server)
        server.queue(200, "<html>gateway</html>")
        with backend.as_base() as view, pytest.raises(ProbeError, match="non-JSON"):
            view.generate("x", max_new_tokens=1)
        server.queue(404, recorded("ollama_error_404"))
        with backend.as_base() as view, pytest.raises(ProbeError, match=r"HTTP 404.*not found"):
            view.generate("x", max_new_tokens=1)


def test_5xx_is_retried_with_backoff_and_4xx_is_not() -> None:
    with fake_server("openai") as server:
        backend = backend_for(server, retries=2)
        before = len(server.seen)
        server.queue(503, {"error": "overloaded"})
        server.queue(502, {"error": "bad gateway"})
        with backend.as_base() as view:
            assert view.generate("x", max_new_tokens=1) == " past"
        assert len(server.seen) - before == 3
        before = len(server.seen)
        server.queue(400, recorded("openai_error_400"))
        with backend.as_base() as view, pytest.raises(ProbeError, match="HTTP 400"):
            view.generate("x", max_new_tokens=1)
        assert len(server.seen) - before == 1
        before = len(server.seen)
        for _ in range(3):
            server.queue(500, {"error": "down"})
        with backend.as_base() as view, pytest.raises(ProbeError, match="HTTP 500"):
            view.generate("x", max_new_tokens=1)
        assert len(server.seen) - before == 3


def test_connection_errors_are_retried_then_reported() -> None:
    with fake_server("openai") as server:
        url = server.url
    client = CompletionsClient(url, api_key=None, max_retries=1, backoff_s=0.001)
    with pytest.raises(ApiError, match="cannot reach") as info:
        client.complete({"prompt": "x"})
    assert info.value.status is None and not info.value.rejected


def test_api_key_order_and_header(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SWAY_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    assert api_key_from_env() == "sk-openai"
    monkeypatch.setenv("SWAY_API_KEY", "sk-sway")
    assert api_key_from_env() == "sk-sway"
    with fake_server("openai") as server:
        backend_for(server, key=api_key_from_env())
        assert {s.headers["authorization"] for s in server.seen} == {"Bearer sk-sway"}


def test_the_key_is_scrubbed_from_an_error_that_echoes_it() -> None:
    with fake_server("openai") as server:
        backend = backend_for(server, key="sk-secret-123")
        server.queue(401, {"error": "bad key: Bearer sk-secret-123"})
        with backend.as_base() as view, pytest.raises(ProbeError) as info:
            view.generate("x", max_new_tokens=1)
    assert "HTTP 401" in str(info.value)
    assert "sk-secret-123" not in str(info.value)


def test_extra_body_rides_along_but_never_overrides_the_request() -> None:
    extra = {"repeat_penalty": 1.0, "temperature": 9.0}
    with fake_server("openai") as server:
        with backend_for(server, extra_body=extra).as_base() as view:
            view.generate("x", max_new_tokens=2)
        sent = server.seen[-1].body
    assert sent["repeat_penalty"] == 1.0 and sent["temperature"] == 0.0


def test_completions_url_accepts_a_root_or_a_v1_base() -> None:
    assert completions_url("http://h:1/") == "http://h:1/v1/completions"
    assert completions_url("http://h:1/v1") == "http://h:1/v1/completions"


def test_llama_cpp_offsets_are_shifted_back_to_the_request_text() -> None:
    """llama.cpp counts offsets from the SentencePiece dummy-prefix space (recorded answer)."""
    echoed = echoed_tokens(recorded("llamacpp_echo"), "The river ran")
    assert echoed.tokens == [" The", " ", "riv", "er", " ", "r", "an"]  # " s": generated
    assert echoed.offsets == [0, 3, 4, 7, 9, 10, 11]
    assert echoed.logprobs[0] is None


def test_the_worker_never_logs_or_returns_the_key(caplog: pytest.LogCaptureFixture) -> None:
    """A real worker process at DEBUG, a server that rejects and echoes the header back."""
    secret = "sk-never-shown-42"
    env = {"SWAY_API_KEY": secret, "SWAY_WORKER_LOG_LEVEL": "DEBUG"}
    with fake_server("openai") as server, caplog.at_level(logging.DEBUG):
        spec = ModelSpec(
            kind="api",
            base="tiny",
            endpoint=server.url,
            worker=WorkerOptions(env=env, options={"retry_backoff_s": "0.001"}),
        )
        with swayhost.build(spec) as remote, remote.as_base() as view:
            server.queue(401, {"error": f"invalid key Bearer {secret}"})
            with pytest.raises(ProbeError, match="HTTP 401") as info:
                view.generate("x", max_new_tokens=1)
        assert {s.headers["authorization"] for s in server.seen} == {f"Bearer {secret}"}
    assert secret not in str(info.value) + "".join(getattr(info.value, "__notes__", []))
    assert any(r.name.startswith("swayhost.worker") for r in caplog.records), "worker log seen"
    assert not [r for r in caplog.records if secret in r.getMessage()]
