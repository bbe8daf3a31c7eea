"""The ``swayhost`` command line (git/pip style: subcommands, --help, --json, exit codes).

Exit codes (``swayhost.exitcodes``): 0 success, 1 a check failed, 2 usage
error, 3 a worker could not be started or crashed. Subcommands live in
``swayhost.commands``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from swayhost.commands import COMMANDS
from swayhost.errors import SwayHostError
from swayhost.exitcodes import EXIT_USAGE, EXIT_WORKER


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="swayhost", description="Run dlm-sway scoring backends as out-of-process workers."
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in COMMANDS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        code: int = args.func(args)
    except SwayHostError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_WORKER
    return code


if __name__ == "__main__":
    sys.exit(main())
