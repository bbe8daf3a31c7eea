"""``swayhost describe``: start a worker and print what it advertises.

The dummy worker (and a worker command after ``--``) describes itself with
no model. Every other kind Loads a model first, so it needs the flags that
name one (``NEEDS``); without them the command says which, instead of
starting a worker that can only fail.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from google.protobuf.json_format import MessageToDict

import swayhost
from swayhost.commands.conformance import command_label
from swayhost.commands.model_flags import add_model_flags, model_spec
from swayhost.console import print_table, table
from swayhost.exitcodes import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from swayhost.node_deps import missing_dependency

NEEDS = {
    "hf": ("base", "adapter"),
    "mlx": ("base", "adapter"),
    "api": ("base", "endpoint"),
    "custom": ("base", "entry_point"),
}
"""The flags each kind needs to Load a model (the dummy worker needs none)."""


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "describe", help="start a worker and print what it advertises"
    )
    parser.add_argument("--kind", default="dummy", help="built-in worker kind (default dummy)")
    add_model_flags(parser, "the model to Load (HF id or folder; api: model name)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("argv", nargs="*", help="worker command after --, instead of --kind")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    missing = [] if args.argv else [f for f in NEEDS.get(args.kind, ()) if not getattr(args, f)]
    if missing:
        flags = " and ".join(f"--{f.replace('_', '-')}" for f in NEEDS[args.kind])
        print(
            f"error: describe --kind {args.kind} loads a model first: pass {flags}"
            f" (`swayhost workers --kind {args.kind}` shows its interpreter and versions"
            " without one)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    problem = missing_dependency(args.argv)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_FAILED
    worker = swayhost.WorkerOptions(
        command=tuple(args.argv) if args.argv else None, name=command_label(args.argv)
    )
    spec = model_spec(args, worker)
    start = swayhost.spawn if args.argv or args.kind == "dummy" else swayhost.build
    with start(spec) as backend:
        described = MessageToDict(backend.description, preserving_proto_field_name=True)
    if args.json:
        print(json.dumps(described, indent=2, sort_keys=True))
        return EXIT_OK
    rows = table(f"worker {described.get('worker_kind', '?')}", "field", "value")
    for section in ("runtime", "framework_versions", "capabilities", "limits", "model"):
        for key, value in sorted(described.get(section, {}).items()):
            rows.add_row(f"{section}.{key}", str(value))
    print_table(rows)
    return EXIT_OK
