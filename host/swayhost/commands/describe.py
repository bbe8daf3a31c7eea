"""``swayhost describe``: start a worker and print what it advertises."""

from __future__ import annotations

import argparse
import json
from typing import Any

from google.protobuf.json_format import MessageToDict

import swayhost
from swayhost.exitcodes import EXIT_OK


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "describe", help="start a worker and print what it advertises"
    )
    parser.add_argument("--kind", default="dummy", help="built-in worker kind (default dummy)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("argv", nargs="*", help="worker command after --, instead of --kind")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    worker = swayhost.WorkerOptions(command=tuple(args.argv) if args.argv else None)
    with swayhost.spawn(swayhost.ModelSpec(kind=args.kind, base="", worker=worker)) as backend:
        described = MessageToDict(backend.description, preserving_proto_field_name=True)
    if args.json:
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
