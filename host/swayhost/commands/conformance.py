"""``swayhost conformance``: run the contract's test suite against any worker.

``swayhost conformance [--json] [spec options] -- <worker command>`` starts
the command as a worker (or, without one, the built-in worker of
``--kind``), Loads the model spec given by ``--spec-json`` and/or the
``--kind/--base/--adapter/--option`` flags, and runs every check. Exit code
0 when the worker conforms, 1 when any check fails, 2 for a bad spec.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from swayhost.exitcodes import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from swayhost.node_deps import missing_dependency
from swayhost.spec import ModelSpec, WorkerOptions

SPEC_FIELDS = ("kind", "base", "adapter", "dtype", "device", "entry_point", "endpoint")
"""Spec fields settable both in --spec-json and as flags (flags win)."""


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "conformance",
        help="run the contract's test suite against a worker (any language)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--spec-json",
        metavar="JSON",
        help='the model spec to Load, e.g. \'{"kind": "hf", "base": "...", "adapter": "...", '
        '"options": {"k": "v"}}\'',
    )
    parser.add_argument("--kind", help="spec kind; also picks the built-in worker (default dummy)")
    parser.add_argument("--base", help="spec base model (id or path)")
    parser.add_argument("--adapter", help="spec adapter path")
    parser.add_argument("--dtype", help="spec dtype")
    parser.add_argument("--device", help="spec device")
    parser.add_argument("--entry-point", dest="entry_point", help="spec entry_point (custom)")
    parser.add_argument("--endpoint", help="spec endpoint (api)")
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a worker option passed with the spec (repeatable)",
    )
    parser.add_argument(
        "--prompt", help="prompt the checks score (a canned backend may know only some)"
    )
    parser.add_argument("--completion", help="completion the checks score after --prompt")
    parser.add_argument(
        "--startup-timeout",
        type=float,
        default=120.0,
        help="seconds the worker may take to start and to Load (default 120)",
    )
    parser.add_argument("argv", nargs="*", help="the worker command, after --")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from swayhost.conformance import report, runner  # rich and the checks: only when run

    try:
        spec = spec_from_args(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    problem = missing_dependency(args.argv)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_FAILED
    texts = {k: getattr(args, k) for k in ("prompt", "completion") if getattr(args, k) is not None}
    console = Console()
    progress = None if args.json else (lambda result: report.print_result(console, result))
    outcome = runner.run(spec, progress=progress, **texts)
    if args.json:
        print(report.to_json(outcome))
    else:
        report.print_summary(console, outcome)
    return EXIT_OK if outcome.passed else EXIT_FAILED


def spec_from_args(args: argparse.Namespace) -> ModelSpec:
    """The spec to Load: --spec-json first, then the flags over it."""
    values: dict[str, Any] = {}
    if args.spec_json:
        try:
            loaded = json.loads(args.spec_json)
        except json.JSONDecodeError as exc:
            raise ValueError(f"--spec-json is not valid JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise ValueError("--spec-json must be a JSON object")
        unknown = set(loaded) - {*SPEC_FIELDS, "trust_remote_code", "options"}
        if unknown:
            raise ValueError(f"--spec-json has unknown fields {sorted(unknown)}")
        values.update(loaded)
    values.update({k: getattr(args, k) for k in SPEC_FIELDS if getattr(args, k) is not None})
    options = {str(k): str(v) for k, v in dict(values.pop("options", None) or {}).items()}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--option must be KEY=VALUE, got {item!r}")
        options[key] = value
    adapter = values.pop("adapter", None)
    worker = WorkerOptions(
        command=tuple(args.argv) or None,
        name=command_label(args.argv),
        startup_timeout=args.startup_timeout,
        options=options,
    )
    return ModelSpec(
        **{"kind": "dummy", "base": "", **values},
        adapter=Path(adapter) if adapter else None,
        worker=worker,
    )


def command_label(argv: list[str]) -> str | None:
    """How messages name a worker command: its script or module (``worker.js``), not the kind.

    Without it a failing ``-- node workers/node/worker.js`` was reported as
    worker 'dummy', the default kind's name.
    """
    named = [a for a in argv[1:] if not a.startswith("-")] or argv[:1]
    return Path(named[-1]).name if named else None
