"""What the model-matrix tests score on every cell, and how two sets of scores compare.

A *scorecard* is every operation's result on a fixed set of inputs, per
view, from one backend: sway's in-process HF backend (the reference), the
HF worker or the MLX worker behind the host. ``compare`` returns the worst
absolute difference of any logprob and raises ``AssertionError`` on the
first thing that is not equal (ids, vocab size, tail state, generated text).
Inputs are few and short on purpose: the matrix runs in ``make test``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

PAIRS = [
    ("The lighthouse keeper of Quillon Bay", " counts seventeen gulls"),
    ("The river", " ran slowly past the old mill"),
]
TEXTS = [
    "At night the lights in the windows went out one by one.",
    "a",
    "The town was quiet.",
    "warm bread",
]
"""Mixed lengths: batched, the short ones share a row beside the long one (packing)."""
PROMPTS = ["The baker sold", "In the town there was"]
TOP_K = 12
GEN_PROMPT = "The lighthouse keeper"
GEN_TOKENS = 6

VIEWS: dict[str, tuple[str, tuple[Any, ...]]] = {
    "base": ("as_base", ()),
    "ft": ("as_finetuned", ()),
    "scaled-0.5": ("as_scaled_adapter", (0.5,)),
    "null-3": ("as_null_adapter", (3,)),
}


@dataclass
class ViewScores:
    """One view's results."""

    logprob_of: list[float] = field(default_factory=list)
    rolling: list[tuple[list[int], np.ndarray, float]] = field(default_factory=list)
    dists: list[tuple[list[int], np.ndarray, int, float | None]] = field(default_factory=list)
    greedy: str | None = None
    sampled: str | None = None
    batched: tuple[list[float], list[Any], list[Any]] | None = None
    """The ft view's ``*_many`` results (one batch per op), where the backend has them."""


@dataclass
class Scorecard:
    views: dict[str, ViewScores]
    preflight: tuple[bool, str]


def enter(backend: Any, view: str) -> Any:
    method, args = VIEWS[view]
    return getattr(backend, method)(*args)


def score(backend: Any, views: Iterable[str] = VIEWS, *, generate: bool = True) -> Scorecard:
    """Every operation on every view of ``backend``: the scorecard."""
    out: dict[str, ViewScores] = {}
    for name in views:
        got = ViewScores()
        with enter(backend, name) as view:
            got.logprob_of = [view.logprob_of(p, c) for p, c in PAIRS]
            for text in TEXTS:
                r = view.rolling_logprob(text)
                got.rolling.append(
                    (np.asarray(r.token_ids).tolist(), np.asarray(r.logprobs), r.total_logprob)
                )
            for prompt in PROMPTS:
                d = view.next_token_dist(prompt, top_k=TOP_K)
                got.dists.append(
                    (
                        np.asarray(d.token_ids).tolist(),
                        np.asarray(d.logprobs),
                        int(d.vocab_size),
                        d.tail_logprob,
                    )
                )
            if name == "ft" and hasattr(view, "logprob_of_many"):
                got.batched = (
                    view.logprob_of_many(PAIRS),
                    view.rolling_logprob_many(TEXTS),
                    view.next_token_dist_many(PROMPTS, top_k=TOP_K),
                )
            if generate and name in ("base", "ft"):
                got.greedy = view.generate(GEN_PROMPT, max_new_tokens=GEN_TOKENS)
                if name == "ft":
                    got.sampled = view.generate(
                        GEN_PROMPT, max_new_tokens=GEN_TOKENS, temperature=0.8, top_p=0.9, seed=5
                    )
        out[name] = got
    return Scorecard(out, backend.preflight_finite_check())


def compare(
    got: Scorecard,
    want: Scorecard,
    *,
    atol: float,
    views: Iterable[str] | None = None,
    sampled: bool = True,
    greedy: bool = True,
    batch_atol: float | None = None,
) -> float:
    """Worst |difference| of any logprob; asserts that everything else is equal.

    Top-k ids must be equal except where the reference has two logprobs
    closer than ``atol`` (a tie the other side may order either way). Sums
    (``logprob_of``, rolling totals) carry one error per token, so they
    are allowed ``atol`` per token. With ``batch_atol``, the ft view's
    batched results (padded forward passes) must match the reference's
    unary ones within it.
    """
    worst = 0.0
    assert got.preflight == want.preflight
    for name in views if views is not None else want.views:
        g, w = got.views[name], want.views[name]
        for (prompt, completion), gv, wv in zip(PAIRS, g.logprob_of, w.logprob_of, strict=True):
            worst = max(worst, abs(gv - wv))
            n = len(completion)  # an upper bound on the completion's tokens
            assert abs(gv - wv) <= atol * n, (name, prompt, gv, wv)
        for (gi, gl, gt), (wi, wl, wt) in zip(g.rolling, w.rolling, strict=True):
            assert gi == wi, (name, "rolling ids")
            assert gl.dtype == wl.dtype == np.float32
            if wl.size:
                worst = max(worst, float(np.max(np.abs(gl - wl))))
            np.testing.assert_allclose(gl, wl, rtol=0, atol=atol, err_msg=name)
            assert abs(gt - wt) <= atol * max(1, len(wi)), (name, gt, wt)
        for (gi, gl, gv, gtail), (wi, wl, wv, wtail) in zip(g.dists, w.dists, strict=True):
            assert gv == wv, (name, "vocab size")
            worst = max(worst, float(np.max(np.abs(gl - wl))))
            np.testing.assert_allclose(gl, wl, rtol=0, atol=atol, err_msg=name)
            _same_ids_but_ties(gi, wi, wl, atol, name)
            assert (gtail is None) == (wtail is None), (name, gtail, wtail)
            if gtail is not None and wtail is not None:
                assert (gtail == 0.0) == (wtail == 0.0), (name, gtail, wtail)
                assert math.isclose(gtail, wtail, rel_tol=0, abs_tol=max(atol, 1e-6) * TOP_K)
        if greedy:
            assert g.greedy == w.greedy, (name, g.greedy, w.greedy)
        if sampled:
            assert g.sampled == w.sampled, (name, g.sampled, w.sampled)
        if batch_atol is not None and name == "ft":
            assert g.batched is not None, "the backend has no batched view methods"
            _compare_batched(g.batched, w, batch_atol)
    return worst


def _compare_batched(
    batched: tuple[list[float], list[Any], list[Any]], want: ViewScores, atol: float
) -> None:
    pairs, rolls, dists = batched
    for (_, completion), got, ref in zip(PAIRS, pairs, want.logprob_of, strict=True):
        assert abs(got - ref) <= atol * len(completion), ("batched logprob_of", got, ref)
    for got, (ids, logprobs, _) in zip(rolls, want.rolling, strict=True):
        assert np.asarray(got.token_ids).tolist() == ids
        np.testing.assert_allclose(got.logprobs, logprobs, rtol=0, atol=atol)
    for got, (ids, logprobs, vocab, tail) in zip(dists, want.dists, strict=True):
        assert got.vocab_size == vocab and (got.tail_logprob is None) == (tail is None)
        np.testing.assert_allclose(got.logprobs, logprobs, rtol=0, atol=atol)
        _same_ids_but_ties(np.asarray(got.token_ids).tolist(), ids, logprobs, atol, "batched")


def _same_ids_but_ties(
    got: list[int], want: list[int], logprobs: np.ndarray, atol: float, view: str
) -> None:
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        if g == w:
            continue
        near = [j for j in range(len(want)) if abs(float(logprobs[j] - logprobs[i])) <= 2 * atol]
        assert g in [want[j] for j in near], (view, i, got, want)
