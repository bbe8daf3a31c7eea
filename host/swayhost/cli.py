"""The ``swayhost`` command line (git/pip style: subcommands, --help, --json, exit codes).

Exit codes: 0 success, 1 a check failed, 2 usage error, 3 a worker could
not be started or crashed.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from google.protobuf.json_format import MessageToDict

from swayhost.errors import SwayHostError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_WORKER = 0, 1, 2, 3


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="swayhost", description="Run dlm-sway scoring backends as out-of-process workers."
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser("demo", help="end-to-end differential check through a real worker")
    demo.add_argument(
        "--kind",
        choices=["hf", "dummy"],
        default="hf",
        help="which worker to run (default: hf on the embedded tiny model)",
    )
    demo.add_argument("--python", help="interpreter for the worker (default: this one)")
    demo.add_argument("--json", action="store_true", help="print the report as JSON")

    describe = sub.add_parser("describe", help="start a worker and print what it advertises")
    describe.add_argument("--kind", default="dummy", help="built-in worker kind (default dummy)")
    describe.add_argument("--json", action="store_true", help="print JSON")
    describe.add_argument("argv", nargs="*", help="worker command after --, instead of --kind")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        if args.command == "demo":
            from swayhost.demo import main as demo_main

            return demo_main(args.kind, args.python, args.json)
        if args.command == "describe":
            return _describe(args.kind, args.argv, args.json)
    except SwayHostError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_WORKER
    parser.error(f"unknown command {args.command!r}")
    return EXIT_USAGE


def _describe(kind: str, argv: list[str], as_json: bool) -> int:
    import swayhost

    worker = swayhost.WorkerOptions(command=tuple(argv) if argv else None)
    with swayhost.spawn(swayhost.ModelSpec(kind=kind, base="", worker=worker)) as backend:
        described = MessageToDict(backend.description, preserving_proto_field_name=True)
    if as_json:
        print(json.dumps(described, indent=2, sort_keys=True))
        return EXIT_OK
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"worker {described.get('worker_kind', '?')}")
    table.add_column("field")
    table.add_column("value")
    for section in ("runtime", "framework_versions", "capabilities", "limits", "model"):
        for key, value in sorted(described.get(section, {}).items()):
            table.add_row(f"{section}.{key}", str(value))
    Console().print(table)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
