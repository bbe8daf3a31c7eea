"""The dummy worker: a deterministic toy language model for tests.

Unlike sway's in-process dummy (a table of canned answers) this one must
work through a real process boundary for every view, so its numbers are
computed, not stored: a whitespace tokenizer over a 64-word vocabulary and
logits drawn from a numpy generator seeded by a hash of the context. The
fine-tuned view adds a fixed "adapter" delta, the scaled view adds
``lam`` times it, and a null view adds seeded noise instead. Every answer is
a pure function of (view, input), identical across processes and runs.

Options (``ModelSpec.options`` / ``WorkerOptions.options``):
  ``protocols``: comma list among ``scalable,null,preflight`` to keep (all by default)
  ``nan_ft``: ``1`` makes the fine-tuned view produce NaN (fails preflight)
  ``crash_on``: a prompt that kills the worker process (for recovery tests)
  ``hang_on``: a prompt whose call never returns (the worker still answers health checks)
  ``sleep_ms``: milliseconds every operation takes, like a slow model
"""

from __future__ import annotations

import hashlib
import math
import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
from numpy.typing import NDArray
from swayplugin.v1 import backend_pb2 as pb

from swayworker.results import RollingLogprob, TokenDist, probe_error
from swayworker.views import ViewSlot, null_std

VOCAB = [f"w{i}" for i in range(64)]
MAX_PROMPT_TOKENS = 512


def tokenize(text: str) -> list[int]:
    """Whitespace words -> ids; a word's id is a stable hash of it."""
    return [
        int.from_bytes(hashlib.sha256(w.encode()).digest()[:4], "little") % len(VOCAB)
        for w in text.split()
    ]


def _rng(*parts: object) -> np.random.Generator:
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _log_softmax(logits: NDArray[np.float64]) -> NDArray[np.float64]:
    shifted: NDArray[np.float64] = logits - logits.max()
    return shifted - math.log(float(np.exp(shifted).sum()))


class _Faults:
    """The misbehaviour asked for in the options, applied once per operation."""

    def __init__(self, options: dict[str, str]) -> None:
        self.crash_on = options.get("crash_on") or None
        self.hang_on = options.get("hang_on") or None
        self.sleep_s = float(options.get("sleep_ms") or 0) / 1000.0

    def apply(self, prompt: str) -> None:
        if prompt == self.crash_on:
            os.kill(os.getpid(), signal.SIGKILL)
        if prompt == self.hang_on:
            threading.Event().wait()
        if self.sleep_s:
            time.sleep(self.sleep_s)


class _View:
    """One view: base logits plus ``delta_scale`` adapter delta plus noise."""

    def __init__(
        self,
        view_id: str,
        delta_scale: float,
        noise: tuple[int, float] | None,
        nan: bool,
        faults: _Faults,
    ) -> None:
        self.id = view_id
        self._delta_scale = delta_scale
        self._noise = noise
        self._nan = nan
        self._faults = faults

    def _logprobs(self, context: tuple[int, ...]) -> np.ndarray:
        if self._nan:
            return np.full(len(VOCAB), np.nan)
        logits = _rng("base", context).normal(size=len(VOCAB))
        if self._delta_scale:
            logits = logits + self._delta_scale * 2.0 * _rng("delta", context).normal(
                size=len(VOCAB)
            )
        if self._noise is not None:
            seed, std = self._noise
            logits = logits + std * 50.0 * _rng("null", seed, context).normal(size=len(VOCAB))
        return _log_softmax(logits)

    def _check(self, prompt: str) -> list[int]:
        ids = tokenize(prompt)
        if len(ids) > MAX_PROMPT_TOKENS:
            raise ValueError(
                f"prompt has {len(ids)} tokens; this model accepts at most {MAX_PROMPT_TOKENS}"
            )
        return ids

    def logprob_of(self, prompt: str, completion: str) -> float:
        self._faults.apply(prompt)
        prompt_ids = self._check(prompt)
        full = self._check(prompt + completion)
        if len(full) <= len(prompt_ids):
            raise probe_error(
                "logprob_of",
                f"completion tokenized to zero tokens "
                f"(prompt={prompt!r}, completion={completion!r})",
            )
        return float(
            sum(self._logprobs(tuple(full[:t]))[full[t]] for t in range(len(prompt_ids), len(full)))
        )

    def rolling_logprob(self, text: str) -> Any:
        self._faults.apply(text)
        ids = self._check(text)
        lps = np.array(
            [self._logprobs(tuple(ids[:t]))[ids[t]] for t in range(1, len(ids))], dtype=np.float32
        )
        return RollingLogprob(
            token_ids=np.array(ids, dtype=np.int64),
            logprobs=lps,
            num_tokens=len(ids),
            total_logprob=float(lps.sum()) if lps.size else 0.0,
        )

    def next_token_dist(self, prompt: str, *, top_k: int = 256) -> Any:
        self._faults.apply(prompt)
        lp = self._logprobs(tuple(self._check(prompt)))
        k = min(top_k, len(VOCAB))
        order = np.argsort(-lp, kind="stable")[:k]
        top = lp[order].astype(np.float32)
        tail: float | None = None
        if k < len(VOCAB):
            mass = 1.0 - float(np.exp(top.astype(np.float64)).sum())
            tail = math.log(mass) if mass > 1e-12 else 0.0
        return TokenDist(
            token_ids=order.astype(np.int64), logprobs=top, vocab_size=len(VOCAB), tail_logprob=tail
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
        self._faults.apply(prompt)
        ids = self._check(prompt)
        rng = np.random.default_rng(seed)
        out: list[str] = []
        for _ in range(max_new_tokens):
            lp = self._logprobs(tuple(ids))
            if temperature > 0:
                p = np.exp(lp / temperature)
                nxt = int(rng.choice(len(VOCAB), p=p / p.sum()))
            else:
                nxt = int(np.argmax(lp))
            word = VOCAB[nxt]
            out.append(word)
            ids = ids + tokenize(word)
        return " ".join(out)

    def close(self) -> None:
        return None


class DummyBackend:
    """Toggling differential backend over the toy model; one view at a time."""

    safe_for_concurrent_views = False
    vocab_size = len(VOCAB)
    device = "cpu"
    dtype = "float64"
    max_prompt_tokens = MAX_PROMPT_TOKENS

    def __init__(self, options: dict[str, str] | None = None) -> None:
        opts = options or {}
        self._nan_ft = opts.get("nan_ft") == "1"
        self._faults = _Faults(opts)
        self._slot = ViewSlot("DifferentialBackend")

    def cache_identity(self) -> str:
        return f"dummy:{len(VOCAB)}"

    @contextmanager
    def _view(self, label: str, view: _View) -> Iterator[_View]:
        with self._slot.claim(label):
            yield view

    def as_base(self) -> Any:
        return self._view("base", _View("base", 0.0, None, False, self._faults))

    def as_finetuned(self) -> Any:
        return self._view("ft", _View("ft", 1.0, None, self._nan_ft, self._faults))

    def as_scaled_adapter(self, lam: float) -> Any:
        return self._view(
            f"scaled({lam})", _View(f"scaled_{lam:.2f}", lam, None, False, self._faults)
        )

    def as_null_adapter(
        self, seed: int, *, init_scale: float = 0.02, rank_scale: float = 1.0
    ) -> Any:
        std = null_std(init_scale, rank_scale)
        return self._view(
            f"null({seed})", _View(f"null_{seed}", 0.0, (seed, std), False, self._faults)
        )

    def preflight_finite_check(self) -> tuple[bool, str]:
        for label, enter in (("base", self.as_base), ("ft", self.as_finetuned)):
            with enter() as view:
                dist = view.next_token_dist("hello", top_k=8)
            n_bad = int((~np.isfinite(dist.logprobs)).sum())
            if n_bad:
                return False, (
                    f"{label} view produced {n_bad}/{dist.logprobs.size} non-finite "
                    f"logprob(s) on prompt 'hello'"
                )
        return True, ""

    def close(self) -> None:
        return None


_OPTIONAL = {
    "scalable": "as_scaled_adapter",
    "null": "as_null_adapter",
    "preflight": "preflight_finite_check",
}


def load_dummy(msg: pb.ModelSpec) -> Any:
    """Build the dummy backend, dropping the protocols not asked for."""
    options = dict(msg.options)
    wanted = options.get("protocols")
    if wanted is None:
        return DummyBackend(options)
    keep = {p.strip() for p in wanted.split(",") if p.strip()}
    unknown = keep - set(_OPTIONAL)
    if unknown:
        raise ValueError(
            f"unknown dummy protocols {sorted(unknown)}; choose from {sorted(_OPTIONAL)}"
        )
    hidden = {method: None for name, method in _OPTIONAL.items() if name not in keep}
    reduced = type("ReducedDummyBackend", (DummyBackend,), {})
    for method in hidden:
        setattr(reduced, method, property(_missing(method)))
    return reduced(options)


def _missing(method: str) -> Any:
    def getter(self: Any) -> Any:
        raise AttributeError(method)

    return getter
