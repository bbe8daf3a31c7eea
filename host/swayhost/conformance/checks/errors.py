"""Checks of how the worker says no: before Load, for what it does not
advertise, and for bad input.

The host turns a worker's status code, ``sway-error-reason``,
``sway-error-type`` and ``sway-error-attrs`` back into the exception an
in-process backend raises (``ProbeError`` for a completion of no tokens,
``ValueError`` for another bad argument, ``NotImplementedError`` for a
missing capability), so sway's own ``except`` clauses only work if every
worker answers with all four right (``refusals`` has the table). A bad
request must also leave the worker serving.
"""

from __future__ import annotations

from dataclasses import replace

from swayplugin.v1 import backend_pb2 as pb
from swayworker.codec import (
    Generate,
    LogprobOf,
    NextTokenDist,
    Op,
    RollingLogprobOp,
    ViewKey,
)

from swayhost.conformance.checks.context import (
    NULL,
    SCALED,
    Context,
    label,
    without_view,
)
from swayhost.conformance.checks.refusals import (
    BAD_ARGUMENT,
    EMPTY_COMPLETION,
    NOT_LOADED,
    UNSUPPORTED,
    Refusal,
    refusal_problems,
)
from swayhost.conformance.result import CheckSkipped, Problems
from swayhost.conformance.session import RpcFailure, score_request

OVERSIZE_CHARS_PER_TOKEN = 8
"""Characters per token to be sure a prompt exceeds a token limit (tokens are shorter)."""
LONG_PROMPT_CHARS = 64 * 1024
"""The 'very long prompt' sent when the worker states no limit."""


def _bad_input(
    ctx: Context, cases: list[tuple[str, pb.ScoreRequest]], expected: Refusal = BAD_ARGUMENT
) -> str:
    """Each request must fail with INVALID_ARGUMENT / BAD_ARGUMENT and the exception type
    sway raises, and the worker go on."""
    problems = Problems()
    for what, message in cases:
        outcome = ctx.live.rpc("Score", message)
        problems.extend(refusal_problems(outcome, expected, what))
    still = ctx.still_serving()
    if still:
        problems.add(still)
    problems.raise_if_any()
    sent = ", ".join(what for what, _ in cases)
    return (
        f"{sent}: INVALID_ARGUMENT with ERROR_REASON_BAD_ARGUMENT and "
        f"{expected.exception_type}; still serving afterwards"
    )


def not_loaded(ctx: Context) -> str:
    """Before Load, a scoring call fails with FAILED_PRECONDITION / NOT_LOADED."""
    assert ctx.started is not None
    if ctx.started.model.loaded:
        raise CheckSkipped("the worker reports a model loaded before Load")
    outcome = ctx.live.score(ViewKey.base(), LogprobOf(ctx.prompt, ctx.completion))
    problems = Problems()
    problems.extend(refusal_problems(outcome, NOT_LOADED, "score before Load"))
    problems.raise_if_any()
    return "FAILED_PRECONDITION with ERROR_REASON_NOT_LOADED and a RuntimeError"


def unimplemented(ctx: Context) -> str:
    """What the worker does not advertise answers UNIMPLEMENTED / UNSUPPORTED."""
    caps = ctx.caps
    base = ViewKey.base()
    cases: list[tuple[str, str, object]] = []
    if not caps.scalable:
        cases.append(("the scaled view", "Score", score_request(SCALED, ctx.any_op())))
    if not caps.null_calibrated:
        cases.append(("the null view", "Score", score_request(NULL, ctx.any_op())))
    for op in ctx.all_ops():
        if op not in ctx.ops():
            cases.append((label(base, op), "Score", score_request(base, op)))
    if not caps.preflight:
        cases.append(("Preflight", "Preflight", pb.PreflightRequest()))
    if not cases:
        raise CheckSkipped("every capability is advertised, so there is nothing to refuse")
    problems = Problems()
    for what, method, message in cases:
        outcome = ctx.live.rpc(method, message)
        problems.extend(refusal_problems(outcome, UNSUPPORTED, what))
    problems.raise_if_any()
    return f"refused {', '.join(what for what, _, _ in cases)} with UNIMPLEMENTED"


def empty_completion(ctx: Context) -> str:
    """logprob_of with an empty completion is an error, not 0.0."""
    if not ctx.caps.logprob_of:
        raise CheckSkipped("logprob_of is not advertised")
    op = LogprobOf(ctx.prompt, "")
    cases = [("empty completion", score_request(ViewKey.ft(), op))]
    return _bad_input(ctx, cases, EMPTY_COMPLETION)


def bad_top_k(ctx: Context) -> str:
    """next_token_dist with top_k <= 0 is an error."""
    if not ctx.caps.next_token_dist:
        raise CheckSkipped("next_token_dist is not advertised")
    cases = [
        (f"top_k={k}", score_request(ViewKey.base(), NextTokenDist(ctx.prompt, k))) for k in (0, -3)
    ]
    return _bad_input(ctx, cases)


def no_view(ctx: Context) -> str:
    """A request that names no view is an error (views are never implied)."""
    return _bad_input(ctx, [("request without a view", without_view(ctx.any_op()))])


def no_operation(ctx: Context) -> str:
    """A request that names no operation is an error."""
    message = pb.ScoreRequest(view=pb.View(base=pb.BaseView()))
    return _bad_input(ctx, [("request without an operation", message)])


def max_new_tokens(ctx: Context) -> str:
    """generate with max_new_tokens <= 0 is an error."""
    if not ctx.caps.generate:
        raise CheckSkipped("generate is not advertised")
    op = Generate(ctx.prompt, 0)
    return _bad_input(ctx, [("max_new_tokens=0", score_request(ViewKey.base(), op))])


def null_rank_scale(ctx: Context) -> str:
    """A null view with rank_scale <= 0 is an error (sway raises ValueError)."""
    if not ctx.caps.null_calibrated:
        raise CheckSkipped("the null view is not advertised")
    view = ViewKey.null(NULL.seed, NULL.init_scale, 0.0)
    return _bad_input(ctx, [("rank_scale=0", score_request(view, ctx.any_op()))])


def oversized_prompt(ctx: Context) -> str:
    """A prompt over limits.max_prompt_tokens is INVALID_ARGUMENT, never a crash."""
    limit = ctx.loaded.limits.max_prompt_tokens if ctx.loaded is not None else 0
    unit = ctx.prompt + " "
    chars = OVERSIZE_CHARS_PER_TOKEN * (limit + 1) if limit else LONG_PROMPT_CHARS
    prompt = unit * (chars // len(unit) + 1)
    op = _with_prompt(ctx.any_op(), prompt)
    what = f"a {len(prompt)}-character prompt"
    if limit:
        return _bad_input(
            ctx, [(f"{what} (limit {limit} tokens)", score_request(ViewKey.base(), op))]
        )
    outcome = ctx.live.score(ViewKey.base(), op)
    problems = Problems()
    if isinstance(outcome, RpcFailure):
        problems.extend(refusal_problems(outcome, BAD_ARGUMENT, what))
    still = ctx.still_serving()
    if still:
        problems.add(still)
    problems.raise_if_any()
    verdict = "answered" if not isinstance(outcome, RpcFailure) else "refused with INVALID_ARGUMENT"
    return f"no limit advertised; {what} was {verdict}, and the worker went on"


def _with_prompt(op: Op, prompt: str) -> Op:
    if isinstance(op, RollingLogprobOp):
        return RollingLogprobOp(prompt)
    return replace(op, prompt=prompt)
