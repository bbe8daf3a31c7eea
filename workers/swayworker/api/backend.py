"""A completions server as a sway backend: one endpoint, one model.

Scoring over HTTP, as sway's ``ApiScoringBackend`` does it:

* ``logprob_of(prompt, completion)``: one ``echo`` request for
  ``prompt + completion``; the completion's tokens are those starting at or
  after the prompt's last character (``text_offset``), so a token that
  straddles the boundary counts as prompt, and their logprobs are summed;
* ``rolling_logprob(text)``: the echoed logprobs after the first token;
* ``next_token_dist(prompt, top_k)``: the alternatives of one generated
  token; ids are the server's when it sends them (mlx_lm.server), else
  synthesized in rank order (sway's choice); the tail needs the vocabulary
  size, which an API does not tell: give it as the ``vocab_size`` option;
* ``generate``: the completion text.

Better than sway's: capabilities follow the server (``probe``), a ``top_k``
over the server's cap is clamped and reported instead of silently cut, and
retries and errors are explicit (``client``).

The backend is differential only in form: ``as_base`` and ``as_finetuned``
yield the same single view, so a worker can serve one side of
``swayhost.build_two_separate`` (base model on one server, fine-tuned on
another). Being stateless HTTP, it is safe for concurrent views.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from importlib import metadata
from typing import Any, TypeVar

import numpy as np

from swayworker import preflight
from swayworker.api import probe
from swayworker.api.client import ApiError, CompletionsClient
from swayworker.api.responses import (
    EchoedTokens,
    MalformedResponse,
    TopEntry,
    echoed_tokens,
    prompt_tokens,
    text_of,
    top_entries,
)
from swayworker.results import RollingLogprob, TokenDist, probe_error

log = logging.getLogger("swayworker")
R = TypeVar("R")

API_KEY_VARIABLES = ("SWAY_API_KEY", "OPENAI_API_KEY")


def api_key_from_env() -> str | None:
    """``SWAY_API_KEY``, else ``OPENAI_API_KEY``, else None (no auth header)."""
    for name in API_KEY_VARIABLES:
        value = os.environ.get(name)
        if value:
            return value
    return None


class ApiBackend:
    """One model behind an OpenAI-compatible ``/v1/completions`` endpoint."""

    safe_for_concurrent_views: bool = True

    def __init__(
        self,
        client: CompletionsClient,
        *,
        model: str,
        endpoint: str,
        vocab_size: int = 0,
        max_top_k: int = 0,
        max_prompt_tokens: int = 0,
        extra_body: Mapping[str, Any] | None = None,
    ) -> None:
        if vocab_size < 0 or max_top_k < 0 or max_prompt_tokens < 0:
            raise ValueError("vocab_size, max_top_k and max_prompt_tokens must be >= 0")
        self.max_prompt_tokens = max_prompt_tokens
        """The model's context in tokens (0: unknown), advertised and enforced.

        An API does not tell its context length, and a server that does not
        enforce it either (mlx_lm.server) spends minutes on a prompt far past
        it and returns garbage positions. With the limit known, a longer
        prompt is the caller's bad argument, told at once.
        """
        self._client = client
        self._model = model
        self._extra = dict(extra_body or {})
        self._endpoint = endpoint.rstrip("/")
        self._vocab_size = vocab_size
        self._server = probe.probe_server(client, model, max_top_k=max_top_k)
        self._clamp_logged: set[int] = set()
        self._merge_logged = False

    # -- facts the worker advertises ---------------------------------------

    def operations(self) -> tuple[str, ...]:
        """What this server supports; the worker advertises exactly these."""
        return self._server.operations()

    @property
    def max_top_k(self) -> int:
        """The server's cap on alternatives (0: none found)."""
        return self._server.max_top_k

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    def framework_versions(self) -> dict[str, str]:
        return {"httpx": metadata.version("httpx")}

    def cache_identity(self) -> str:
        """sway's format for API backends."""
        return f"api:{self._endpoint}:{self._model}"

    # -- views: one endpoint is one model ------------------------------------

    @contextmanager
    def as_base(self) -> Iterator[ApiBackend]:
        yield self

    @contextmanager
    def as_finetuned(self) -> Iterator[ApiBackend]:
        yield self

    def preflight_finite_check(self) -> tuple[bool, str]:
        """sway's check on the next-token distribution; reachability when there is none."""
        if self._server.dialect is not None:
            return preflight.check_base_and_ft(self)
        try:
            self.generate(preflight.PREFLIGHT_PROMPT, max_new_tokens=1)
        except Exception as exc:
            return False, f"preflight request raised {type(exc).__name__}: {exc}"
        return True, ""

    def close(self) -> None:
        self._client.close()

    # -- scoring ---------------------------------------------------------------

    def logprob_of(self, prompt: str, completion: str) -> float:
        if not completion:
            raise probe_error("api.logprob_of", "completion tokenized to zero tokens")
        echoed = self._echo(prompt + completion, "api.logprob_of")
        values = [
            lp
            for offset, lp in zip(echoed.offsets, echoed.logprobs, strict=True)
            if offset >= len(prompt) and lp is not None
        ]
        if not values:
            raise probe_error(
                "api.logprob_of",
                f"completion tokenized to zero tokens (prompt={prompt!r}, "
                f"completion={completion!r})",
            )
        total = math.fsum(values)
        _finite_or_raise([total], "api.logprob_of")
        return total

    def rolling_logprob(self, text: str) -> Any:
        echoed = self._echo(text, "api.rolling_logprob")
        values = [lp for lp in echoed.logprobs[1:] if lp is not None]
        _finite_or_raise(values, "api.rolling_logprob")
        logprobs = np.asarray(values, dtype=np.float32)
        return RollingLogprob(
            token_ids=np.arange(len(echoed.tokens), dtype=np.int64),
            logprobs=logprobs,
            num_tokens=len(echoed.tokens),
            total_logprob=float(logprobs.sum()) if logprobs.size else 0.0,
        )

    def next_token_dist(self, prompt: str, *, top_k: int = 256) -> Any:
        dialect = self._server.dialect
        if dialect is None:
            raise probe_error("api.next_token_dist", "this server returns no logprobs")
        payload = self._payload(prompt, max_tokens=1, temperature=0)
        payload |= probe.logprob_fields(dialect, self._clamped(top_k))
        entries = self._ask(payload, "api.next_token_dist", top_entries)
        if not entries:
            raise probe_error("api.next_token_dist", "the server returned no alternatives")
        self._warn_if_merged(entries, self._clamped(top_k))
        entries = sorted(entries, key=lambda e: -e.logprob)[:top_k]
        values = np.asarray([e.logprob for e in entries], dtype=np.float32)
        _finite_or_raise(values.tolist(), "api.next_token_dist")
        return TokenDist(
            token_ids=_token_ids(entries),
            logprobs=values,
            vocab_size=self._vocab_size or len(entries),
            tail_logprob=self._tail(values),
        )

    def generate(
        self,
        prompt: str,
        *,
        max_new_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int = 0,
    ) -> str:
        payload = self._payload(
            prompt,
            max_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            seed=int(seed),
        )
        return self._ask(payload, "api.generate", text_of)

    # -- internals ---------------------------------------------------------------

    def _payload(self, prompt: str, **fields: Any) -> dict[str, Any]:
        """A request body: the user's server-specific extras, then ours (ours win)."""
        return {**self._extra, "model": self._model, "prompt": prompt, **fields}

    def _ask(self, payload: dict[str, Any], probe_name: str, parse: Callable[[Any], R]) -> R:
        """POST and parse; a failed or malformed answer is sway's ProbeError for ``probe_name``."""
        try:
            data = self._client.complete(payload)
            self._check_prompt_tokens(data)
            return parse(data)
        except (ApiError, MalformedResponse) as exc:
            raise probe_error(probe_name, str(exc)) from None

    def _check_prompt_tokens(self, data: Any) -> None:
        """A ValueError (BAD_ARGUMENT) when the server counted more prompt tokens than the limit.

        The worker has no tokenizer, so the server's ``usage.prompt_tokens``
        is the count; a server that sends no usage is not checked.
        """
        if not self.max_prompt_tokens:
            return
        counted = prompt_tokens(data)
        if counted is not None and counted > self.max_prompt_tokens:
            raise ValueError(
                f"prompt is {counted} tokens; this model's context holds "
                f"{self.max_prompt_tokens} (the max_prompt_tokens option): shorten the prompt"
            )

    def _echo(self, text: str, probe_name: str) -> EchoedTokens:
        payload = self._payload(text, max_tokens=1, temperature=0, echo=True, logprobs=1)
        return self._ask(payload, probe_name, lambda data: echoed_tokens(data, text))

    def _clamped(self, top_k: int) -> int:
        """``top_k`` within the server's cap; a clamp is logged once per requested value."""
        cap = self._server.max_top_k
        if not cap or top_k <= cap:
            return top_k
        if top_k not in self._clamp_logged:
            self._clamp_logged.add(top_k)
            log.warning("top_k=%d is above the server's cap; clamped to %d", top_k, cap)
        return cap

    def _warn_if_merged(self, entries: list[TopEntry], asked: int) -> None:
        """Say once why fewer alternatives came back than asked, when the cause is known."""
        expected = min(asked, self._vocab_size) if self._vocab_size else asked
        if self._merge_logged or len(entries) >= expected:
            return
        if any(e.token_id is None for e in entries):
            self._merge_logged = True
            log.warning(
                "asked for %d alternatives, the server sent %d: it keys them by their text, "
                "so tokens that decode alike merge; their mass is in the tail",
                expected,
                len(entries),
            )

    def _tail(self, values: Any) -> float | None:
        """sway's three states; unknown (None) unless the vocabulary is larger than k."""
        if self._vocab_size <= values.size:
            return None
        residual = 1.0 - float(np.exp(values.astype(np.float64)).sum())
        return math.log(residual) if residual > 1e-12 else 0.0


def _finite_or_raise(values: list[float], probe_name: str) -> None:
    """sway's rule: a non-finite logprob from the server is an error, not a score."""
    bad = [v for v in values if not math.isfinite(v)]
    if bad:
        raise probe_error(probe_name, f"non-finite logprob(s) from the server: {bad[:5]}")


def _token_ids(entries: list[TopEntry]) -> Any:
    """The server's ids when every entry has one, else rank order (sway's synthesis)."""
    ids = [e.token_id for e in entries]
    if all(i is not None for i in ids):
        return np.asarray(ids, dtype=np.int64)
    return np.arange(len(entries), dtype=np.int64)
