"""sway's preflight check, shared by every built-in worker.

A NaN-weighted adapter would otherwise score garbage for hours; one small
forward pass per view catches it before the first probe. The check and its
wording are sway's, so a verdict reads the same whichever worker gave it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

PREFLIGHT_PROMPT = "hello"
PREFLIGHT_TOP_K = 8


def check_base_and_ft(backend: Any) -> tuple[bool, str]:
    """Run one next-token pass in the base and the ft view; fail on non-finite output."""
    try:
        with backend.as_base() as view:
            base = view.next_token_dist(PREFLIGHT_PROMPT, top_k=PREFLIGHT_TOP_K)
        with backend.as_finetuned() as view:
            ft = view.next_token_dist(PREFLIGHT_PROMPT, top_k=PREFLIGHT_TOP_K)
    except Exception as exc:
        return False, f"preflight forward pass raised {type(exc).__name__}: {exc}"
    for label, dist in (("base", base), ("ft", ft)):
        verdict = finite_verdict(label, dist)
        if verdict:
            return False, verdict
    return True, ""


def finite_verdict(label: str, dist: Any) -> str:
    """sway's preflight message for a non-finite distribution, '' when finite."""
    n_bad = int((~np.isfinite(dist.logprobs)).sum())
    if n_bad > 0:
        return (
            f"{label} view produced {n_bad}/{dist.logprobs.size} non-finite "
            f"logprob(s) on prompt {PREFLIGHT_PROMPT!r} — adapter is "
            f"likely broken (NaN/inf weights). sway refuses to score a model "
            f"producing non-finite outputs."
        )
    tail = dist.tail_logprob
    if tail is not None and not math.isfinite(tail):
        return f"{label} view produced non-finite tail_logprob = {tail}"
    return ""
