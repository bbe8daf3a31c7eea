"""What a well-formed result looks like, and when two results are the same.

Arrays travel as raw little-endian bytes, so a worker in another language
can get the width or the count wrong in ways a typed API never would; these
helpers read the bytes themselves (with exact length checks) rather than
trusting a decoder. Numbers follow sway's definitions: log-probabilities are
<= 0, ``rolling_logprob`` has one entry fewer than its tokens, and a top-k
plus its tail (``tail_logprob``, three states) accounts for all the mass.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from swayplugin.v1 import backend_pb2 as pb
from swayworker.codec import Generate, LogprobOf, NextTokenDist, Op, RollingLogprobOp

LOGPROB_EPS = 1e-4
"""A log-probability may exceed 0 by float rounding, never by more."""
MASS_TOLERANCE = 1e-3
"""How far exp(top-k) + exp(tail) may sum from 1 (float32 logprobs, k <= a few hundred)."""
SAME_TOLERANCE = 1e-4
"""Relative difference tolerated between two computations of one result
(a batched padded pass versus a single one differs by ~1e-6 in fp32)."""

RESULT_FIELD: dict[type, str] = {
    LogprobOf: "logprob",
    RollingLogprobOp: "rolling",
    NextTokenDist: "dist",
    Generate: "text",
}

_IDS = np.dtype("<i8")
_LOGPROBS = np.dtype("<f4")


def array_problems(ids: bytes, logprobs: bytes) -> list[str]:
    """Byte lengths that are not whole int64 ids / float32 logprobs."""
    problems = []
    if len(ids) % _IDS.itemsize:
        problems.append(f"token_ids has {len(ids)} bytes, not a multiple of 8 (int64)")
    if len(logprobs) % _LOGPROBS.itemsize:
        problems.append(f"logprobs has {len(logprobs)} bytes, not a multiple of 4 (float32)")
    return problems


def ids_of(raw: bytes) -> NDArray[np.int64]:
    return np.frombuffer(raw, dtype=_IDS).astype(np.int64)


def logprobs_of(raw: bytes) -> NDArray[np.float64]:
    return np.frombuffer(raw, dtype=_LOGPROBS).astype(np.float64)


def shape_problems(op: Op, response: pb.ScoreResponse) -> list[str]:
    """The answer has the right result field, whole arrays and consistent counts."""
    which = response.WhichOneof("result")
    want = RESULT_FIELD[type(op)]
    if which != want:
        return [f"answered with result {which!r}, expected {want!r}"]
    if isinstance(op, RollingLogprobOp):
        r = response.rolling
        problems = array_problems(r.token_ids, r.logprobs)
        if problems:
            return problems
        n_ids, n_lps = len(r.token_ids) // 8, len(r.logprobs) // 4
        if n_ids != r.num_tokens:
            problems.append(
                f"num_tokens is {r.num_tokens} but token_ids holds {n_ids} ids"
                + _width_hint(len(r.token_ids), r.num_tokens, len(r.logprobs), -1)
            )
        elif n_lps != max(n_ids - 1, 0):
            problems.append(
                f"{n_lps} logprobs for {n_ids} tokens; expected {max(n_ids - 1, 0)} "
                "(token i given tokens < i, none for the first)"
                + _width_hint(len(r.token_ids), -1, len(r.logprobs), max(n_ids - 1, 0))
            )
        return problems
    if isinstance(op, NextTokenDist):
        d = response.dist
        problems = array_problems(d.token_ids, d.logprobs)
        if problems:
            return problems
        n_ids, n_lps = len(d.token_ids) // 8, len(d.logprobs) // 4
        limit = d.clamped_top_k if 0 < d.clamped_top_k < op.top_k else op.top_k
        if n_ids != n_lps:
            problems.append(
                f"{n_ids} token_ids but {n_lps} logprobs"
                + _width_hint(len(d.token_ids), n_lps, len(d.logprobs), n_ids)
            )
            return problems
        if not 1 <= n_ids <= limit:
            problems.append(f"{n_ids} entries for top_k={op.top_k}; expected 1..{limit}")
        return problems
    return []


def _width_hint(id_bytes: int, ids_wanted: int, logprob_bytes: int, logprobs_wanted: int) -> str:
    """Why the counts disagree when an array has the wrong element width (-1: unknown count)."""
    if logprobs_wanted > 0 and logprob_bytes == 8 * logprobs_wanted:
        return (
            "; logprobs has 8 bytes per value: arrays are float32 little-endian "
            "(4 bytes per logprob), not float64"
        )
    if ids_wanted > 0 and id_bytes == 4 * ids_wanted:
        return "; token_ids has 4 bytes per id: arrays are int64 little-endian (8 bytes), not int32"
    return " (arrays are little-endian: token_ids int64, 8 bytes each; logprobs float32, 4 bytes)"


def value_problems(op: Op, response: pb.ScoreResponse, vocab_size: int) -> list[str]:
    """sway's numeric invariants for a well-shaped answer (see ``shape_problems``)."""
    if isinstance(op, LogprobOf):
        lp = response.logprob
        if not math.isfinite(lp) or lp > LOGPROB_EPS:
            return [f"logprob_of returned {lp!r}; a sum of log-probabilities is finite and <= 0"]
        return []
    if isinstance(op, RollingLogprobOp):
        r = response.rolling
        lps = logprobs_of(r.logprobs)
        problems = _logprob_problems(lps, "rolling logprobs", r.logprobs)
        total = float(lps.sum()) if lps.size else 0.0
        if not math.isclose(r.total_logprob, total, rel_tol=1e-4, abs_tol=1e-3):
            problems.append(f"total_logprob {r.total_logprob!r} != sum of logprobs {total!r}")
        problems.extend(_id_range_problems(ids_of(r.token_ids), vocab_size))
        return problems
    if isinstance(op, NextTokenDist):
        return dist_problems(response.dist, vocab_size)
    return []


def dist_problems(d: pb.TokenDistResult, advertised_vocab: int) -> list[str]:
    """Descending finite logprobs, unique in-vocabulary ids, and a tail that adds up."""
    ids, lps = ids_of(d.token_ids), logprobs_of(d.logprobs)
    problems = _logprob_problems(lps, "top-k logprobs", d.logprobs)
    if d.vocab_size <= 0:
        problems.append(f"vocab_size is {d.vocab_size}; it must be the vocabulary's size")
    elif advertised_vocab and d.vocab_size != advertised_vocab:
        problems.append(f"vocab_size {d.vocab_size} != Describe's model.vocab_size")
    if np.any(np.diff(lps) > 0):
        problems.append(f"top-k logprobs are not in descending order: {_preview(lps)}")
    if len(np.unique(ids)) != ids.size:
        problems.append(f"token_ids repeat: {_preview(ids)}")
    problems.extend(_id_range_problems(ids, d.vocab_size))
    problems.extend(_tail_problems(d, lps))
    return problems


def _tail_problems(d: pb.TokenDistResult, lps: NDArray[np.float64]) -> list[str]:
    top_mass = float(np.exp(lps).sum())
    k, vocab = lps.size, d.vocab_size
    if not d.HasField("tail_logprob"):
        if k < vocab and abs(top_mass - 1.0) > MASS_TOLERANCE:
            return [
                f"tail_logprob is absent although the top-{k} of {vocab} hold only "
                f"{top_mass:.6f} of the mass; report log(1 - sum(exp(top-k)))"
            ]
        return []
    tail = d.tail_logprob
    if k >= vocab > 0:
        return [f"tail_logprob is {tail!r} although the top-{k} cover the vocabulary ({vocab})"]
    if not math.isfinite(tail) or tail > 0:
        return [f"tail_logprob is {tail!r}; it must be a finite log-probability <= 0"]
    # 0.0 is the contract's "residual below 1e-12" state: then top-k hold all the mass.
    mass = top_mass if tail == 0.0 else top_mass + math.exp(tail)
    if abs(mass - 1.0) > MASS_TOLERANCE:
        return [
            f"exp(top-k) sums to {top_mass:.6f} and tail_logprob={tail!r}, "
            f"so the distribution has mass {mass:.6f}, not 1"
        ]
    return []


def _logprob_problems(lps: NDArray[np.float64], what: str, raw: bytes) -> list[str]:
    problems = []
    if not np.all(np.isfinite(lps)):
        problems.append(f"{what} contain non-finite values: {_preview(lps)}")
    elif np.any(lps > LOGPROB_EPS):
        problems.append(f"{what} contain values > 0: {_preview(lps)}")
    swapped = np.frombuffer(raw, dtype=_LOGPROBS.newbyteorder(">")).astype(np.float64)
    if problems and np.all(np.isfinite(swapped)) and np.all(swapped <= LOGPROB_EPS):
        problems[-1] += (
            f"; read as big-endian they are {_preview(swapped)}: write logprobs as "
            "float32 little-endian"
        )
    return problems


def _id_range_problems(ids: NDArray[np.int64], vocab_size: int) -> list[str]:
    if vocab_size > 0 and ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
        problem = f"token ids outside [0, {vocab_size}): {_preview(ids)}"
        swapped = ids.byteswap()
        if swapped.min() >= 0 and swapped.max() < vocab_size:
            problem += (
                f"; read as big-endian they are {_preview(swapped)}: write token_ids as "
                "int64 little-endian"
            )
        return [problem]
    return []


def _preview(values: NDArray[np.generic], n: int = 8) -> str:
    shown = ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in values[:n].tolist())
    return f"[{shown}{', ...' if values.size > n else ''}]"


# -- sameness ------------------------------------------------------------------


def identical(a: pb.ScoreResponse, b: pb.ScoreResponse) -> bool:
    """Byte-for-byte the same answer (the determinism the contract promises)."""
    return a.SerializeToString(deterministic=True) == b.SerializeToString(deterministic=True)


def difference(a: pb.ScoreResponse, b: pb.ScoreResponse) -> str | None:
    """How ``b`` differs from ``a`` beyond ``SAME_TOLERANCE``; None when they agree."""
    which = a.WhichOneof("result")
    if which != b.WhichOneof("result"):
        return f"result {b.WhichOneof('result')!r} instead of {which!r}"
    if which == "logprob":
        return None if _close(a.logprob, b.logprob) else f"{b.logprob!r} instead of {a.logprob!r}"
    if which == "text":
        return None if a.text == b.text else f"text {b.text!r} instead of {a.text!r}"
    if which == "rolling":
        if a.rolling.token_ids != b.rolling.token_ids:
            return "different token ids"
        return _arrays_differ(a.rolling.logprobs, b.rolling.logprobs)
    da, db = a.dist, b.dist
    if da.vocab_size != db.vocab_size or da.HasField("tail_logprob") != db.HasField("tail_logprob"):
        return "different vocab_size or tail state"
    if da.HasField("tail_logprob") and not _close(da.tail_logprob, db.tail_logprob):
        return f"tail_logprob {db.tail_logprob!r} instead of {da.tail_logprob!r}"
    return _arrays_differ(da.logprobs, db.logprobs) or _ids_differ(da, db)


def _close(x: float, y: float) -> bool:
    return math.isclose(x, y, rel_tol=SAME_TOLERANCE, abs_tol=SAME_TOLERANCE)


def _arrays_differ(a: bytes, b: bytes) -> str | None:
    if len(a) != len(b):
        return f"{len(b) // 4} logprobs instead of {len(a) // 4}"
    x, y = logprobs_of(a), logprobs_of(b)
    if np.allclose(x, y, rtol=SAME_TOLERANCE, atol=SAME_TOLERANCE, equal_nan=True):
        return None
    worst = int(np.argmax(np.abs(x - y)))
    return f"logprob[{worst}] is {y[worst]!r} instead of {x[worst]!r}"


def _ids_differ(a: pb.TokenDistResult, b: pb.TokenDistResult) -> str | None:
    """Top-k ids must agree, except where two candidates tie within tolerance."""
    x, y, lps = ids_of(a.token_ids), ids_of(b.token_ids), logprobs_of(a.logprobs)
    for i in np.flatnonzero(x != y).tolist():
        neighbours = [lps[j] for j in (i - 1, i + 1) if 0 <= j < lps.size]
        if not any(_close(lps[i], n) for n in neighbours):
            return f"token id at rank {i} is {y[i]} instead of {x[i]}"
    return None
