"""``swayhost demo``: the end-to-end differential check (see swayhost.demo)."""

from __future__ import annotations

import argparse
from typing import Any

from swayhost.demo import main


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "demo", help="end-to-end differential check through a real worker"
    )
    parser.add_argument(
        "--kind",
        choices=["hf", "dummy"],
        default="hf",
        help="which worker to run (default: hf on the embedded tiny model)",
    )
    parser.add_argument("--python", help="interpreter for the worker (default: this one)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return main(args.kind, args.python, args.json)
