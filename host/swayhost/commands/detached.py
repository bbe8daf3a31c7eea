"""``swayhost detached list | stop``: workers started to outlive their host.

``list`` shows every record with its state, checked against the kernel:
``running``, ``gone`` (the pid has exited) or ``pid reused`` (another
process has the pid now). ``stop NAME`` ends a running one (Shutdown, then
SIGTERM, then SIGKILL, each signal only to the recorded process) and removes
its record; a stale record is only removed, never signalled; a name with
no record is an error (exit 1), so a script's typo does not pass for a stop.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from swayhost import detached
from swayhost.exitcodes import EXIT_FAILED, EXIT_OK, EXIT_USAGE


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "detached", help="list and stop workers started with WorkerOptions(detach=True)"
    )
    actions = parser.add_subparsers(dest="detached_command", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="every detached worker and its state")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=run_list)
    stop = actions.add_parser("stop", help="stop detached workers and drop their records")
    stop.add_argument("names", nargs="*", help="the workers' names")
    stop.add_argument("--all", action="store_true", help="every recorded worker")
    stop.set_defaults(func=run_stop)


def run_list(args: argparse.Namespace) -> int:
    rows = [
        {
            "name": record.name,
            "state": record.state(),
            "pid": record.pid,
            "kind": record.served().kind,
            "base": record.served().base,
            "adapter": record.served().adapter,
            "address": record.address,
            "log": record.log,
            "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.started_at)),
        }
        for record in detached.records()
    ]
    if args.json:
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    if not rows:
        print("no detached workers")
    for row in rows:
        print(
            f"{row['name']:<16} {row['state']:<10} pid {row['pid']:<8} {row['kind']} "
            f"{row['base']} {row['adapter']}  (since {row['started']}, log {row['log']})"
        )
    return EXIT_OK


def run_stop(args: argparse.Namespace) -> int:
    names = [r.name for r in detached.records()] if args.all else args.names
    if not names:
        print("error: name the workers to stop, or pass --all")
        return EXIT_USAGE
    unknown = [name for name in names if detached.load(name) is None]
    for name in names:
        if name not in unknown:
            print(detached.stop(name))
    for name in unknown:
        print(
            f"error: no detached worker is named {name!r}; `swayhost detached list` shows them",
            file=sys.stderr,
        )
    return EXIT_FAILED if unknown else EXIT_OK
