"""The ``swayhost`` command line (git/pip style: subcommands, --help, --json, exit codes).

Exit codes (``swayhost.exitcodes``): 0 success, 1 a check failed (or a file
could not be read or written), 2 usage error, 3 a worker could not be started
or crashed, 130 interrupted. Errors are one line on stderr, never a
traceback (``-v`` shows it for an ``OSError``). Subcommands live in
``swayhost.commands``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from swayhost.commands import COMMANDS
from swayhost.errors import SwayHostError
from swayhost.exitcodes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_USAGE, EXIT_WORKER


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
    except BrokenPipeError:
        # The reader went away (``| head``): stop quietly, as cat and grep do, and keep
        # Python from printing a second error when it flushes stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_FAILED
    except OSError as exc:  # a file the user named or a folder we must write: one line
        if args.verbose:
            raise
        print(f"error: {exc} (run with -v for the traceback)", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return code


if __name__ == "__main__":
    sys.exit(main())
