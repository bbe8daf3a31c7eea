"""Read completions responses of the shapes real servers send.

Two logprob shapes exist in the wild for ``/v1/completions``:

* the legacy OpenAI one (OpenAI, vLLM, llama.cpp): ``logprobs = {tokens,
  token_logprobs, top_logprobs: [{token: logprob}, ...], text_offset}``,
  where ``echo`` puts the prompt's tokens first, the first one with a
  ``null`` logprob (nothing precedes it);
* the chat one (mlx_lm.server): ``logprobs = {content: [{token, logprob,
  id?, top_logprobs: [{token, logprob, id?}, ...]}, ...]}``.

Ollama's ``/v1/completions`` sends neither (text only). Anything that does
not have the expected shape raises ``MalformedResponse`` naming what was
missing and quoting the start of the body, never a ``KeyError`` from deep
inside; the backend turns it into sway's ``ProbeError`` for the caller.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

BODY_EXCERPT = 200


class MalformedResponse(ValueError):
    """The server's answer lacks what the request asked for."""


@dataclass(frozen=True, slots=True)
class EchoedTokens:
    """The echoed prompt's tokens: text, logprob (None for the first) and char offset."""

    tokens: list[str]
    logprobs: list[float | None]
    offsets: list[int]


@dataclass(frozen=True, slots=True)
class TopEntry:
    token: str
    logprob: float
    token_id: int | None


def text_of(data: Any) -> str:
    text = _choice(data).get("text")
    if not isinstance(text, str):
        raise _malformed("choices[0].text is not a string", data)
    return text


def prompt_tokens(data: Any) -> int | None:
    """``usage.prompt_tokens``: the server's own count of the prompt (None when absent)."""
    usage = data.get("usage") if isinstance(data, dict) else None
    count = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    return count if isinstance(count, int) and not isinstance(count, bool) else None


def echoed_tokens(data: Any, text: str) -> EchoedTokens:
    """The tokens of ``text`` in an ``echo`` answer (tokens generated after it dropped)."""
    logprobs = _choice(data).get("logprobs")
    if not isinstance(logprobs, dict):
        raise _malformed("no choices[0].logprobs: the server did not echo logprobs", data)
    tokens = logprobs.get("tokens")
    values = logprobs.get("token_logprobs")
    if not (isinstance(tokens, list) and isinstance(values, list)):
        raise _malformed("logprobs.tokens / logprobs.token_logprobs missing", data)
    if len(tokens) != len(values):
        raise _malformed(f"{len(tokens)} tokens but {len(values)} token_logprobs", data)
    if not all(isinstance(t, str) for t in tokens):
        raise _malformed("logprobs.tokens holds non-strings", data)
    offsets = _offsets(logprobs.get("text_offset"), tokens, data)
    lead = _leading_extra(tokens, _choice(data).get("text"))
    offsets = [max(0, offset - lead) for offset in offsets]
    keep = sum(1 for offset in offsets if offset < len(text)) if text else min(1, len(tokens))
    numbers = [_optional_float(v, data) for v in values]  # all checked: garbage is garbage
    return EchoedTokens(tokens=tokens[:keep], logprobs=numbers[:keep], offsets=offsets[:keep])


def top_entries(data: Any) -> list[TopEntry]:
    """The alternatives at the first generated position, in either shape."""
    logprobs = _choice(data).get("logprobs")
    if not isinstance(logprobs, dict):
        raise _malformed("no choices[0].logprobs: the server gave no logprobs", data)
    content = logprobs.get("content")
    if isinstance(content, list):
        first = content[0] if content else None
        alternatives = first.get("top_logprobs") if isinstance(first, dict) else None
        if not isinstance(alternatives, list):
            raise _malformed("logprobs.content[0].top_logprobs missing", data)
        return [_chat_entry(entry, data) for entry in alternatives]
    tops = logprobs.get("top_logprobs")
    first = tops[0] if isinstance(tops, list) and tops else None
    if not isinstance(first, dict):
        raise _malformed("logprobs.top_logprobs[0] missing", data)
    return [TopEntry(str(t), _float(v, data), None) for t, v in first.items()]


def _choice(data: Any) -> dict[str, Any]:
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise _malformed("no choices[0]", data)
    choice: dict[str, Any] = choices[0]
    return choice


def _offsets(raw: Any, tokens: list[str], data: Any) -> list[int]:
    """``text_offset`` when the server sends it, else the running length of the token texts."""
    if raw is None:
        offsets, total = [], 0
        for token in tokens:
            offsets.append(total)
            total += len(token)
        return offsets
    if not isinstance(raw, list) or len(raw) != len(tokens):
        raise _malformed("logprobs.text_offset does not match the tokens", data)
    if not all(isinstance(o, int) and not isinstance(o, bool) for o in raw):
        raise _malformed("logprobs.text_offset holds non-integers", data)
    return list(raw)


def _leading_extra(tokens: list[str], text: Any) -> int:
    """Characters the token texts carry before the echoed text starts.

    llama.cpp detokenizes a SentencePiece prompt's first token with its
    dummy-prefix space (" The" for "The") and counts ``text_offset`` from
    there, one character ahead of the text it echoes; shifting back keeps
    the prompt/completion split on the request's own characters.
    """
    joined = "".join(tokens)
    if isinstance(text, str) and len(joined) > len(text) and joined.endswith(text):
        return len(joined) - len(text)
    return 0


def _chat_entry(entry: Any, data: Any) -> TopEntry:
    if not isinstance(entry, dict) or "logprob" not in entry:
        raise _malformed("a top_logprobs entry lacks its logprob", data)
    token_id = entry.get("id")
    return TopEntry(
        token=str(entry.get("token", "")),
        logprob=_float(entry["logprob"], data),
        token_id=token_id if isinstance(token_id, int) and not isinstance(token_id, bool) else None,
    )


def _float(value: Any, data: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _malformed(f"logprob {value!r} is not a number", data)
    return float(value)


def _optional_float(value: Any, data: Any) -> float | None:
    return None if value is None else _float(value, data)


def _malformed(what: str, data: Any) -> MalformedResponse:
    try:
        body = json.dumps(data)[:BODY_EXCERPT]
    except (TypeError, ValueError):
        body = repr(data)[:BODY_EXCERPT]
    return MalformedResponse(f"malformed completions response: {what}; body starts {body!r}")
