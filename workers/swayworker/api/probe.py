"""Learn at Load what a completions server can do, so capabilities follow the server.

Three questions, each answered by a few one-token requests:

1. Which logprob dialect does it speak? The legacy ``logprobs: <int>``
   (OpenAI, vLLM, llama.cpp) or the chat-style ``logprobs: true,
   top_logprobs: <int>`` (mlx_lm.server, which rejects an integer
   ``logprobs``)? Neither (Ollama): ``next_token_dist`` is unavailable.
2. How many alternatives does it accept at most? Ask for many; a server
   that refuses (HTTP 4xx, as OpenAI, vLLM and mlx_lm.server do above their
   caps) is bisected down to the largest accepted count. Fewer entries in
   a 200 answer are not a cap: legacy answers key alternatives by token
   text, so tokens that decode alike (byte pieces) collapse into one.
3. Does ``echo`` work? Only then can prompt tokens be scored, so only then
   are ``logprob_of`` and ``rolling_logprob`` offered (mlx_lm.server ignores
   ``echo``: the answer's text does not start with the prompt).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

from swayworker.api.client import ApiError, CompletionsClient
from swayworker.api.responses import MalformedResponse, echoed_tokens, text_of, top_entries

log = logging.getLogger("swayworker")

Dialect = Literal["legacy", "chat"]
PROBE_PROMPT = "The quick brown fox jumps over"
PROBE_TOP_K = 256
"""Largest count asked while probing; a server accepting it is reported as uncapped."""


@dataclass(frozen=True, slots=True)
class ServerCaps:
    """What the probe found."""

    dialect: Dialect | None
    max_top_k: int
    echo: bool

    def operations(self) -> tuple[str, ...]:
        ops = ["generate"]
        if self.dialect is not None:
            ops.append("next_token_dist")
        if self.echo:
            ops += ["logprob_of", "rolling_logprob"]
        return tuple(ops)


def logprob_fields(dialect: Dialect, k: int) -> dict[str, Any]:
    """The request fields asking for ``k`` alternatives in ``dialect``."""
    if dialect == "legacy":
        return {"logprobs": k}
    return {"logprobs": True, "top_logprobs": k}


def probe_server(client: CompletionsClient, model: str, *, max_top_k: int = 0) -> ServerCaps:
    """Ask the server; ``max_top_k`` > 0 skips the cap search and trusts the user."""
    dialect = _dialect(client, model)
    cap = 0
    if dialect is not None:
        cap = max_top_k if max_top_k > 0 else _cap(client, model, dialect)
    echo = dialect == "legacy" and _echoes(client, model)
    caps = ServerCaps(dialect=dialect, max_top_k=cap, echo=echo)
    log.info(
        "server %s: logprobs=%s, top_k cap=%s, echo=%s -> %s",
        client.url,
        dialect or "none",
        cap or "none",
        echo,
        ", ".join(caps.operations()),
    )
    return caps


def _request(model: str, **fields: Any) -> dict[str, Any]:
    return {"model": model, "prompt": PROBE_PROMPT, "max_tokens": 1, "temperature": 0, **fields}


def _gives_alternatives(client: CompletionsClient, model: str, dialect: Dialect, k: int) -> bool:
    """Whether asking ``k`` alternatives in ``dialect`` is accepted and answered."""
    try:
        data = client.complete(_request(model, **logprob_fields(dialect, k)))
        return bool(top_entries(data))
    except ApiError as exc:
        if exc.rejected:
            return False
        raise  # unreachable or failing server: Load fails with that message
    except MalformedResponse:  # a 200 without the logprobs asked for
        return False


def _dialect(client: CompletionsClient, model: str) -> Dialect | None:
    for dialect in ("legacy", "chat"):
        if _gives_alternatives(client, model, dialect, 1):
            return dialect
    return None


def _cap(client: CompletionsClient, model: str, dialect: Dialect) -> int:
    if _gives_alternatives(client, model, dialect, PROBE_TOP_K):
        return 0
    accepted, refused = 1, PROBE_TOP_K  # 1 worked when finding the dialect
    while refused - accepted > 1:
        middle = (accepted + refused) // 2
        if _gives_alternatives(client, model, dialect, middle):
            accepted = middle
        else:
            refused = middle
    return accepted


def _echoes(client: CompletionsClient, model: str) -> bool:
    try:
        data = client.complete(_request(model, echo=True, logprobs=1))
        echoed = echoed_tokens(data, PROBE_PROMPT)
        return text_of(data).startswith(PROBE_PROMPT) and len(echoed.tokens) > 1
    except ApiError as exc:
        if exc.rejected:
            return False
        raise
    except MalformedResponse:
        return False
