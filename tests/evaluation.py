"""A small differential evaluation, the same wherever the backend's worker runs.

The remote, detached and Ray tests run it on a worker reached their way and
on a plain local worker, and compare the two results.
"""

from __future__ import annotations

from typing import Any

from tests.helpers import same_result

PAIRS = [
    ("The lighthouse keeper", " climbed the stairs"),
    ("Once upon a time", " there was a fox"),
    ("In the morning", " the keeper lit the lamp"),
]


def differential_report(backend: Any, pairs: list[tuple[str, str]] = PAIRS) -> dict[str, Any]:
    """logprob_of under base, ft and a half-scaled adapter; ft's next-token distribution."""
    with backend.as_base() as base:
        base_scores = [base.logprob_of(p, c) for p, c in pairs]
    with backend.as_finetuned() as ft:
        ft_scores = [ft.logprob_of(p, c) for p, c in pairs]
        dists = [ft.next_token_dist(p, top_k=8) for p, _ in pairs]
    with backend.as_scaled_adapter(0.5) as half:
        half_scores = [half.logprob_of(p, c) for p, c in pairs]
    return {"base": base_scores, "ft": ft_scores, "half": half_scores, "dists": dists}


def same_report(got: dict[str, Any], want: dict[str, Any]) -> bool:
    """Bit-for-bit equality of two reports."""
    return got.keys() == want.keys() and all(
        len(got[k]) == len(want[k])
        and all(same_result(g, w) for g, w in zip(got[k], want[k], strict=True))
        for k in want
    )
