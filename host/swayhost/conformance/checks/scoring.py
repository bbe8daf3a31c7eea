"""Checks of what the worker computes: every operation on every view, sane
distributions, determinism (also across processes), batches, concurrency,
the scaled view's endpoints and preflight.

Determinism is checked on bytes, not on rounded numbers: the host retries
idempotent calls on a restarted worker and promises results bit-identical
to an uninterrupted run, which only holds if every answer is a pure function
of its request.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

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
    Context,
    label,
    without_view,
)
from swayhost.conformance.checks.refusals import (
    BAD_ARGUMENT,
    EMPTY_COMPLETION,
    Refusal,
    item_error_problems,
)
from swayhost.conformance.checks.results import (
    difference,
    identical,
    shape_problems,
    value_problems,
)
from swayhost.conformance.result import CheckFailed, CheckSkipped, Problems
from swayhost.conformance.session import RpcFailure, score_request

FULL_VOCAB_MAX = 4096
"""Ask for the whole vocabulary as top-k only up to this size (the answer stays small)."""
GENERATE_LIMIT = 1
"""max_new_tokens of the generate check: one token cannot hold the prompt as well."""
CONCURRENT_THREADS = 8
CONCURRENT_ROUNDS = 3


def operations(ctx: Context) -> str:
    """Every advertised operation succeeds on every advertised view, with well-formed results."""
    problems = Problems()
    requests = ctx.requests()
    for name, view, op in requests:
        outcome = ctx.live.score(view, op)
        if isinstance(outcome, RpcFailure):
            problems.add(f"{name}: {outcome}")
        else:
            problems.extend(shape_problems(op, outcome), f"{name}: ")
    if ctx.caps.rolling_logprob:
        problems.extend(_short_text_problems(ctx))
    problems.raise_if_any()
    return f"{len(requests)} requests answered on views {_view_names(ctx)}"


def _short_text_problems(ctx: Context) -> list[str]:
    """sway's rule: a text of fewer than 2 tokens scores as an empty array with total 0."""
    outcome = ctx.live.score(ViewKey.base(), RollingLogprobOp(""))
    if isinstance(outcome, RpcFailure):
        if outcome.code.name == "INVALID_ARGUMENT":
            return []
        return [f"rolling_logprob(''): {outcome}; expected an empty result"]
    if outcome.rolling.logprobs or outcome.rolling.total_logprob != 0.0:
        return ["rolling_logprob('') must give no logprobs and total_logprob 0"]
    return []


def distribution(ctx: Context) -> str:
    """logprobs <= 0, top-k descending with unique in-vocabulary ids, and top-k + tail = 1."""
    scored = [op for op in ctx.ops() if not isinstance(op, Generate)]
    if not scored:
        raise CheckSkipped("the worker scores nothing (it only generates)")
    full_k = _full_vocab_k(ctx)
    problems = Problems()
    for view in ctx.views():
        requests: list[tuple[str, Op]] = [(label(view, op), op) for op in scored]
        if full_k:
            whole = NextTokenDist(ctx.prompt, full_k)
            requests.append((f"{label(view, whole)}(top_k={full_k})", whole))
        for name, op in requests:
            outcome = ctx.live.score(view, op)
            if isinstance(outcome, RpcFailure):
                problems.add(f"{name}: {outcome}")
                continue
            shape = shape_problems(op, outcome)
            problems.extend(shape or value_problems(op, outcome, ctx.vocab_size), f"{name}: ")
            if isinstance(op, NextTokenDist) and op.top_k == full_k and not shape:
                n = len(outcome.dist.token_ids) // 8
                problems.expect(n == full_k, f"{name}: {n} entries for the whole vocabulary")
    problems.raise_if_any()
    whole_note = f"; top_k = vocabulary ({full_k}) gives no tail" if full_k else ""
    return f"sane on views {_view_names(ctx)}{whole_note}"


def _full_vocab_k(ctx: Context) -> int:
    """A top_k covering the whole vocabulary: 0 unless known, small and not clamped."""
    vocab = ctx.vocab_size
    max_top_k = ctx.loaded.limits.max_top_k if ctx.loaded is not None else 0
    if not ctx.caps.next_token_dist or not 0 < vocab <= FULL_VOCAB_MAX:
        return 0
    if 0 < max_top_k < vocab:
        return 0
    return vocab


def generate(ctx: Context) -> str:
    """generate returns only the new text, of at most max_new_tokens tokens."""
    if not ctx.caps.generate:
        raise CheckSkipped("generate is not advertised")
    problems = Problems()
    notes = []
    for view in (ViewKey.base(), ViewKey.ft()):
        op = Generate(ctx.prompt, GENERATE_LIMIT)
        name = f"{label(view, op)}(max_new_tokens={GENERATE_LIMIT})"
        outcome = ctx.live.score(view, op)
        if isinstance(outcome, RpcFailure):
            problems.add(f"{name}: {outcome}")
            continue
        shape = shape_problems(op, outcome)
        if shape:
            problems.extend(shape, f"{name}: ")
            continue
        text = outcome.text
        echo = bool(ctx.prompt) and text.startswith(ctx.prompt)
        fix = "; return only the new text" if echo else ""
        counted = _new_tokens(ctx, text)
        if isinstance(counted, str):
            problems.add(f"{name}: cannot count the tokens of {text!r}: {counted}")
        elif counted is not None and counted > GENERATE_LIMIT:
            problems.add(
                f"{name} returned {text!r}, {counted} tokens by the worker's own tokenizer "
                f"(rolling_logprob of prompt + text, less the prompt's); at most "
                f"{GENERATE_LIMIT}{' (it starts with the prompt)' if echo else ''}{fix}"
            )
        elif echo:
            problems.add(f"{name} returned {text!r}, which starts with the prompt{fix}")
        else:
            notes.append(repr(text))
    problems.raise_if_any()
    how = " (counted by rolling_logprob)" if ctx.caps.rolling_logprob else ""
    return f"max_new_tokens={GENERATE_LIMIT} gave only new text{how}: {', '.join(notes)}"


def _new_tokens(ctx: Context, text: str) -> int | str | None:
    """How many tokens ``text`` is, counted by the worker itself; the smaller of two counts.

    Tokens of prompt + text less the prompt's (a merge across the seam lowers
    it) and of the text alone less those of '' (a BOS token). None when the
    worker cannot count (no rolling_logprob); a message when counting failed.
    """
    if not ctx.caps.rolling_logprob:
        return None
    counts: dict[str, int] = {}
    for whole in dict.fromkeys((ctx.prompt + text, ctx.prompt, text, "")):
        outcome = ctx.live.score(ViewKey.base(), RollingLogprobOp(whole))
        if isinstance(outcome, RpcFailure):
            if whole == "":
                counts[whole] = 0  # may be refused: fewer than 2 tokens
                continue
            return f"rolling_logprob({whole!r}): {outcome}"
        counts[whole] = outcome.rolling.num_tokens
    after_prompt = counts[ctx.prompt + text] - counts[ctx.prompt]
    return min(after_prompt, counts[text] - counts[""])


def determinism(ctx: Context) -> str:
    """The same request twice gives the same bytes (seeded sampling included)."""
    requests = ctx.requests()
    if ctx.caps.generate:
        sampled = Generate(ctx.prompt, 4, temperature=0.8, top_p=0.9, seed=11)
        requests.append(("ft/generate(sampled, seed=11)", ViewKey.ft(), sampled))
    problems = Problems()
    ctx.answers.clear()
    for request in requests:
        name, view, op = request
        first, second = ctx.live.score(view, op), ctx.live.score(view, op)
        failed = [o for o in (first, second) if isinstance(o, RpcFailure)]
        if failed:
            problems.add(f"{name}: {failed[0]}")
        elif not identical(first, second):
            how = difference(first, second) or "they differ in the last bits"
            problems.add(f"{name}: the same request twice gave different bytes ({how})")
        else:
            ctx.answers.append((request, first))
    problems.raise_if_any()
    return f"{len(requests)} requests repeated, byte-identical"


def restart(ctx: Context) -> str:
    """A second worker process, given the same spec, answers with the same bytes."""
    if not ctx.answers:
        raise CheckSkipped("the determinism check recorded no answers to compare with")
    twin, _ = ctx.second_process()
    problems = Problems()
    for (name, view, op), answer in ctx.answers:
        outcome = twin.score(view, op)
        if isinstance(outcome, RpcFailure):
            problems.add(f"{name}: {outcome}")
        elif not identical(answer, outcome):
            how = difference(answer, outcome) or "they differ in the last bits"
            problems.add(f"{name}: a fresh process gave different bytes ({how})")
    problems.raise_if_any()
    return f"{len(ctx.answers)} answers byte-identical from a second process"


def batch(ctx: Context) -> str:
    """ScoreBatch answers in order; bad items fail alone, good ones equal single calls."""
    good = ctx.any_op()
    items: list[tuple[str, pb.ScoreRequest, Op | Refusal]] = [
        ("base request", score_request(ViewKey.base(), good), good),
        ("request without a view", without_view(good), BAD_ARGUMENT),
        ("ft request", score_request(ViewKey.ft(), good), good),
    ]
    bad = _bad_op(ctx)
    if bad is not None:
        op, refusal = bad
        items.append(
            (f"bad {label(ViewKey.base(), op)}", score_request(ViewKey.base(), op), refusal)
        )
    last = ctx.views()[-1]
    items.append((f"{last.label()} request", score_request(last, good), good))
    response = ctx.live.rpc("ScoreBatch", pb.ScoreBatchRequest(requests=[m for _, m, _ in items]))
    if isinstance(response, RpcFailure):
        raise CheckFailed(f"ScoreBatch failed as a whole: {response}")
    if len(response.items) != len(items):
        raise CheckFailed(f"{len(response.items)} results for {len(items)} requests")
    problems = Problems()
    for (name, message, want), item in zip(items, response.items, strict=True):
        if isinstance(want, Refusal):
            problems.extend(_failed_item_problems(item, want), f"{name}: ")
            continue
        if item.HasField("error"):
            said = ctx.excerpts.render(item.error.message)
            problems.add(f"{name}: failed with {said!r}; only bad items may fail")
            continue
        single = ctx.live.rpc("Score", message)
        shape = shape_problems(want, item.result)
        problems.extend(shape, f"{name}: ")
        if not shape and not isinstance(single, RpcFailure):
            how = difference(single, item.result)
            problems.expect(how is None, f"{name}: differs from the single call: {how}")
    problems.raise_if_any()
    return f"{len(items)} items in order; the bad ones failed alone with BAD_ARGUMENT"


def _bad_op(ctx: Context) -> tuple[Op, Refusal] | None:
    """An invalid request of an advertised operation (empty completion, top_k 0...)."""
    caps, p = ctx.caps, ctx.prompt
    if caps.logprob_of:
        return LogprobOf(p, ""), EMPTY_COMPLETION
    if caps.next_token_dist:
        return NextTokenDist(p, 0), BAD_ARGUMENT
    if caps.generate:
        return Generate(p, 0), BAD_ARGUMENT
    return None


def _failed_item_problems(item: pb.ScoreBatchItem, expected: Refusal) -> list[str]:
    if not item.HasField("error"):
        return ["succeeded; it must fail with its own error"]
    problems = Problems()
    problems.extend(item_error_problems(item.error, expected))
    problems.expect(not item.HasField("result"), "a failed item also carries a result")
    return problems.messages


def concurrency(ctx: Context) -> str:
    """Requests on different views, sent concurrently, get the answers they get alone."""
    requests = ctx.requests()
    reference = {name: ctx.live.score(view, op) for name, view, op in requests}
    rounds = requests * CONCURRENT_ROUNDS
    with ThreadPoolExecutor(CONCURRENT_THREADS) as pool:
        outcomes = list(pool.map(lambda r: ctx.live.score(r[1], r[2]), rounds))
    problems = Problems()
    for (name, _, _), outcome in zip(rounds, outcomes, strict=True):
        alone = reference[name]
        if isinstance(outcome, RpcFailure) or isinstance(alone, RpcFailure):
            problems.add(f"{name}: {outcome if isinstance(outcome, RpcFailure) else alone}")
            continue
        how = difference(alone, outcome)
        problems.expect(how is None, f"{name}: under concurrency {how}")
    problems.raise_if_any()
    return f"{len(rounds)} requests on {CONCURRENT_THREADS} threads matched their lone answers"


def scaled_endpoints(ctx: Context) -> str:
    """scaled(0) answers like base and scaled(1) like ft (lam scales the adapter)."""
    if not ctx.caps.scalable:
        raise CheckSkipped("the worker does not advertise the scaled view")
    problems = Problems()
    for lam, twin in ((0.0, ViewKey.base()), (1.0, ViewKey.ft())):
        scaled = ViewKey.scaled(lam)
        for op in ctx.ops():
            want, got = ctx.live.score(twin, op), ctx.live.score(scaled, op)
            name = label(scaled, op)
            if isinstance(want, RpcFailure) or isinstance(got, RpcFailure):
                problems.add(f"{name}: {got if isinstance(got, RpcFailure) else want}")
                continue
            how = difference(want, got)
            problems.expect(how is None, f"{name} differs from {twin.label()}: {how}")
    problems.raise_if_any()
    return "scaled(0) = base and scaled(1) = ft on every operation"


def preflight(ctx: Context) -> str:
    """Preflight runs and reports the loaded model healthy."""
    if not ctx.caps.preflight:
        raise CheckSkipped("the worker does not advertise preflight")
    outcome = ctx.live.rpc("Preflight", pb.PreflightRequest())
    if isinstance(outcome, RpcFailure):
        raise CheckFailed(f"Preflight failed: {outcome}")
    if not outcome.ok:
        raise CheckFailed(f"Preflight reports the model unhealthy: {outcome.reason}")
    return "ok"


def _view_names(ctx: Context) -> str:
    return ", ".join(view.label() for view in ctx.views())
