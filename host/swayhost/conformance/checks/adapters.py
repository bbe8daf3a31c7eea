"""The resident-adapters check: several adapters of one base in one worker.

A request may name its adapter (``ScoreRequest.adapter``) and a Load may add
one beside the others (``LoadRequest.keep_resident``), but only on a worker
that claims ``Capabilities.resident_adapters``. A worker that ignored the
field would answer with the adapter it happens to hold: results of the wrong
adapter, silently. So a worker that does not claim it must refuse both with
UNIMPLEMENTED / UNSUPPORTED, and one that claims it must give a request
naming its loaded adapter the very answer of one that names none, keep
serving after a request naming an adapter that cannot load, and state its
limit.
"""

from __future__ import annotations

from swayplugin.v1 import backend_pb2 as pb

from swayhost.conformance.checks.context import Context
from swayhost.conformance.checks.refusals import UNSUPPORTED, refusal_problems
from swayhost.conformance.result import Problems
from swayhost.conformance.session import RpcFailure, score_request

MISSING_ADAPTER = "/nonexistent/sway-conformance-adapter"
"""An adapter path no worker can load."""


def resident_adapters(ctx: Context) -> str:
    """Requests naming an adapter are served exactly, or refused by a worker that cannot."""
    if not ctx.caps.resident_adapters:
        return _refuses(ctx)
    return _serves(ctx)


def _keep_resident_load(ctx: Context, adapter: str) -> pb.LoadRequest:
    """The spec loaded (as the worker reports it, else as the kit sent it) with ``adapter``."""
    spec = ctx.spec.to_proto()
    if ctx.loaded is not None and ctx.loaded.HasField("loaded_spec"):
        spec.CopyFrom(ctx.loaded.loaded_spec)
    spec.adapter = adapter
    return pb.LoadRequest(spec=spec, keep_resident=True)


def _refuses(ctx: Context) -> str:
    problems = Problems()
    request = score_request(ctx.views()[0], ctx.any_op())
    request.adapter = MISSING_ADAPTER
    outcome = ctx.live.rpc("Score", request)
    problems.extend(refusal_problems(outcome, UNSUPPORTED, "Score naming an adapter"))
    batch = ctx.live.rpc("ScoreBatch", pb.ScoreBatchRequest(requests=[request]))
    if isinstance(batch, RpcFailure) or len(batch.items) != 1:
        problems.add(f"ScoreBatch naming an adapter: {batch}; expected one failed item")
    elif batch.items[0].error.reason != pb.ERROR_REASON_UNSUPPORTED:
        problems.add(
            "ScoreBatch naming an adapter: the item was not refused with ERROR_REASON_UNSUPPORTED"
        )
    load = ctx.live.rpc("Load", _keep_resident_load(ctx, MISSING_ADAPTER))
    problems.extend(refusal_problems(load, UNSUPPORTED, "Load with keep_resident"))
    still = ctx.still_serving()
    if still:
        problems.add(still)
    problems.raise_if_any()
    return "does not claim resident_adapters, and refuses requests and Loads naming an adapter"


def _serves(ctx: Context) -> str:
    problems = Problems()
    assert ctx.loaded is not None  # ctx.caps checked it
    adapter = ctx.loaded.model.adapter_path or ctx.spec.to_proto().adapter
    problems.expect(
        ctx.loaded.limits.max_resident_adapters >= 1,
        "claims resident_adapters but states no Limits.max_resident_adapters",
    )
    load = ctx.live.rpc("Load", _keep_resident_load(ctx, adapter))
    if isinstance(load, RpcFailure):
        problems.add(f"Load with keep_resident of the loaded adapter: {load}")
    elif load.description.model.cache_identity != ctx.loaded.model.cache_identity:
        problems.add(
            "Load with keep_resident of the loaded adapter changed the cache identity "
            f"({ctx.loaded.model.cache_identity!r} -> {load.description.model.cache_identity!r})"
        )
    for what, view, op in ctx.requests():
        if op.name == "generate":
            continue  # sampling aside, covered by determinism; keeps the check quick
        plain = ctx.live.score(view, op)
        named = score_request(view, op)
        named.adapter = adapter
        answer = ctx.live.rpc("Score", named)
        if isinstance(plain, RpcFailure) or isinstance(answer, RpcFailure):
            problems.add(f"{what}: {plain if isinstance(plain, RpcFailure) else answer}")
        elif plain.SerializeToString(deterministic=True) != answer.SerializeToString(
            deterministic=True
        ):
            problems.add(f"{what}: naming the loaded adapter changed the answer")
    missing = score_request(ctx.views()[0], ctx.any_op())
    missing.adapter = MISSING_ADAPTER
    outcome = ctx.live.rpc("Score", missing)
    if not isinstance(outcome, RpcFailure):
        problems.add(f"a request naming {MISSING_ADAPTER} answered OK")
    elif MISSING_ADAPTER not in outcome.details:
        problems.add(f"the error for a missing adapter does not name its path: {outcome}")
    still = ctx.still_serving()
    if still:
        problems.add(still)
    problems.raise_if_any()
    limit = ctx.loaded.limits.max_resident_adapters
    return f"serves requests naming an adapter exactly (up to {limit} resident)"
