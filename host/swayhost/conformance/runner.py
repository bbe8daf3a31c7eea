"""Run every check against one worker command and collect the report.

The runner owns the worker's lifetime: whatever happens inside a check
(failure, crash of the check itself, death of the worker), the worker is
stopped at the end. A worker that dies during a check fails that check, and
the checks that need it are skipped with the cause rather than piling up
identical "unavailable" errors.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from dataclasses import replace

from swayhost.conformance.checks import CHECKS, Check
from swayhost.conformance.checks.context import DEFAULT_COMPLETION, DEFAULT_PROMPT, Context
from swayhost.conformance.result import CheckFailed, CheckResult, CheckSkipped, Report, Status
from swayhost.conformance.session import WorkerUnderTest
from swayhost.spec import ModelSpec

Progress = Callable[[CheckResult], None]


def run(
    spec: ModelSpec,
    *,
    prompt: str = DEFAULT_PROMPT,
    completion: str = DEFAULT_COMPLETION,
    progress: Progress | None = None,
) -> Report:
    """Run the whole kit against ``spec``'s worker (``spec.worker.command`` or built-in)."""
    ctx = Context(spec=named(spec), prompt=prompt, completion=completion)
    report = Report(worker=spec.worker.argv(spec.kind))
    gone: str | None = None
    try:
        for check in CHECKS:
            result, gone = _run_one(check, ctx, gone)
            report.results.append(result)
            if progress is not None:
                progress(result)
    finally:
        if ctx.worker is not None:
            report.transport = ctx.worker.connection.transport
        ctx.close()
    described = ctx.loaded or ctx.started
    report.worker_kind = described.worker_kind if described is not None else ""
    return report


def named(spec: ModelSpec) -> ModelSpec:
    """``spec`` with its worker named after its command, when it has one and no name.

    Messages name the worker: by default that is the spec's kind, which for
    a command under test is only the kind it is asked to Load ('dummy').
    """
    options = spec.worker
    if options.name or not options.command:
        return spec
    return replace(spec, worker=replace(options, name=shlex.join(options.command)))


def _run_one(check: Check, ctx: Context, gone: str | None) -> tuple[CheckResult, str | None]:
    """Run ``check``; also return why the worker is gone, once it is."""
    unmet = _unmet(check, ctx, gone)
    if unmet:
        return CheckResult(check.name, check.title, "skip", unmet, 0.0, check.section), gone
    started = time.monotonic()
    ctx.excerpts.check = check.name
    status: Status = "pass"
    try:
        detail = check.run(ctx)
    except CheckSkipped as exc:
        status, detail = "skip", str(exc)
    except CheckFailed as exc:
        status, detail = "fail", str(exc)
    except Exception as exc:  # a bug in the check, or something no check foresaw
        status, detail = "fail", f"the check raised {type(exc).__name__}: {exc}"
    worker = ctx.worker
    if check.ends_worker:
        gone = f"the worker was shut down by the {check.name!r} check"
    elif worker is not None and gone is None and _exited(worker, status):
        gone = f"the worker exited with {worker.process.describe_exit()} during {check.name!r}"
        status = "fail"
        detail = f"{detail}; {gone}{worker.process.stderr_excerpt(5)}"
    seconds = time.monotonic() - started
    return CheckResult(check.name, check.title, status, detail, seconds, check.section), gone


def _exited(worker: WorkerUnderTest, status: Status) -> bool:
    """Whether the worker died during the check.

    A killed worker's connection breaks a moment before its exit can be
    reaped, so after a failed check the process gets a second to show it.
    """
    if status == "fail":
        return worker.process.wait(1.0)
    return not worker.process.alive()


def _unmet(check: Check, ctx: Context, gone: str | None) -> str | None:
    if check.needs == "nothing":
        return None
    if ctx.worker is None:
        return "the worker did not start (see 'handshake')"
    if check.needs == "model" and ctx.loaded is None:
        return "no model is loaded (see 'load')"
    if gone is not None and not check.own_process:
        return gone
    return None
