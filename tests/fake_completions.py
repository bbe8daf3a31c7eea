"""A scripted ``/v1/completions`` server on loopback that replays recorded shapes.

Each flavor behaves like one real server family, answering with the JSON
recorded under ``tests/data/api``: OpenAI (legacy logprobs, at most 5
alternatives, echo), vLLM (legacy, at most 20, echo), Ollama (text only,
logprobs and echo ignored) and mlx_lm.server (chat-style logprobs, at most
11, integer ``logprobs`` refused, echo ignored). Tests can queue raw
answers (a 503, a malformed body) that are served first, and read every
request the server saw, headers included.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "data" / "api"


def recorded(name: str) -> Any:
    """One recorded response body, decoded."""
    return json.loads((DATA / f"{name}.json").read_text())


@dataclass(frozen=True)
class Flavor:
    dialect: str | None  # "legacy", "chat" or None (no logprobs)
    cap: int
    echo: str | None  # recorded echo answer, None when echo is ignored
    top: str  # recorded answer with alternatives (also the plain text answer)
    error: str  # recorded 400 body


FLAVORS = {
    "openai": Flavor("legacy", 5, "openai_echo", "openai_top", "openai_error_400"),
    "vllm": Flavor("legacy", 20, "vllm_echo", "openai_top", "vllm_error_400"),
    "ollama": Flavor(None, 0, None, "ollama_completion", "ollama_error_404"),
    "mlx_lm": Flavor("chat", 11, None, "mlx_lm_top", "mlx_lm_error_400"),
}


@dataclass(frozen=True)
class Seen:
    body: dict[str, Any]
    headers: dict[str, str]


class FakeCompletions(ThreadingHTTPServer):
    """The server; ``url`` is its root, ``seen`` what it was sent."""

    daemon_threads = True

    def __init__(self, flavor: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.flavor = FLAVORS[flavor]
        self.seen: list[Seen] = []
        self._queued: list[tuple[int, str]] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def queue(self, status: int, body: Any) -> None:
        """Serve ``body`` (JSON-encoded unless a str) with ``status`` before anything else."""
        text = body if isinstance(body, str) else json.dumps(body)
        with self._lock:
            self._queued.append((status, text))

    def answer(self, request: dict[str, Any]) -> tuple[int, str]:
        with self._lock:
            if self._queued:
                return self._queued.pop(0)
        status, body = _flavored(self.flavor, request)
        return status, json.dumps(body)


def _flavored(flavor: Flavor, request: dict[str, Any]) -> tuple[int, Any]:
    logprobs = request.get("logprobs")
    if flavor.dialect is None:
        return 200, recorded(flavor.top)
    if flavor.dialect == "chat":
        if logprobs is not None and not isinstance(logprobs, bool):
            return 400, recorded(flavor.error)
        k = int(request.get("top_logprobs", 0)) if logprobs else 0
    else:
        if isinstance(logprobs, bool):
            return 400, recorded(flavor.error)
        k = int(logprobs or 0)
        if request.get("echo") and flavor.echo:
            return 200, _echo(recorded(flavor.echo), str(request.get("prompt", "")))
    if k > flavor.cap:
        return 400, recorded(flavor.error)
    return 200, _truncated(recorded(flavor.top), k)


def _echo(body: Any, prompt: str) -> Any:
    """The recorded echo for its own prompt; for another, the same shape made up word by word.

    The recorded answer echoes "The river ran slowly" and generates " past";
    the capability probe sends another prompt and must see it echoed back.
    """
    choice = body["choices"][0]
    logprobs = choice["logprobs"]
    if choice["text"].startswith(prompt) and prompt:
        return body
    words = [*re.findall(r"\s*\S+", prompt), " past"]
    offsets = [sum(len(w) for w in words[:i]) for i in range(len(words))]
    values = [None, *(-1.0 for _ in words[1:])]
    choice["text"] = "".join(words)
    logprobs.update(
        tokens=words,
        token_logprobs=values,
        text_offset=offsets,
        top_logprobs=[None if v is None else {w: v} for w, v in zip(words, values, strict=True)],
    )
    return body


def _truncated(body: Any, k: int) -> Any:
    """The recorded alternatives cut to the ``k`` asked for (the server's own behaviour)."""
    body = copy.deepcopy(body)
    logprobs = body["choices"][0]["logprobs"]
    if "content" in logprobs:
        entry = logprobs["content"][0]
        entry["top_logprobs"] = entry["top_logprobs"][:k]
    else:
        logprobs["top_logprobs"][0] = dict(list(logprobs["top_logprobs"][0].items())[:k])
    return body


class _Handler(BaseHTTPRequestHandler):
    server: FakeCompletions

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("content-length", 0)))
        request = json.loads(raw or b"{}")
        self.server.seen.append(Seen(request, {k.lower(): v for k, v in self.headers.items()}))
        if self.path != "/v1/completions":
            status, text = 404, json.dumps({"error": f"no route {self.path}"})
        else:
            status, text = self.server.answer(request)
        data = text.encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""


@contextmanager
def fake_server(flavor: str) -> Iterator[FakeCompletions]:
    server = FakeCompletions(flavor)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
