"""``swayhost stats --journal PATH``: what a run (or several) scored and survived.

Live counters die with the process that ran the evaluation; the journal
keeps the results and every recovery event, so this is where a user looks
after a long run, or before resuming one, to see what is already scored.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from typing import Any

from swayhost.console import table
from swayhost.exitcodes import EXIT_OK
from swayhost.journal import summarize


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "stats", help="results and recovery events recorded in a scoring journal"
    )
    parser.add_argument("--journal", required=True, help="the journal file (WorkerOptions.journal)")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    summary = summarize(args.journal)
    if args.json:
        print(json.dumps(dataclasses.asdict(summary), indent=2, sort_keys=True))
        return EXIT_OK
    from rich.console import Console

    console = Console()
    total = sum(summary.results.values())
    by_op = ", ".join(f"{op} {n}" for op, n in sorted(summary.results.items()))
    console.print(f"journal  {summary.path} (format v{summary.format_version})")
    console.print(f"backend  {summary.cache_identity}")
    console.print(f"results  {total}" + (f" ({by_op})" if by_op else ""))
    events = ", ".join(f"{kind} {n}" for kind, n in sorted(summary.events.items()))
    console.print(f"events   {events or 'none'}")
    runs = table("runs", "run", "started", "host pid", "computed")
    for r in summary.runs:
        runs.add_row(str(r.run), _when(r.started), str(r.host_pid), str(r.computed))
    console.print(runs)
    if summary.recent_events:
        recent = table("latest events", "at", "run", "kind", "message")
        for e in summary.recent_events:
            recent.add_row(_when(e.at), str(e.run), e.kind, e.message)
        console.print(recent)
    return EXIT_OK


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))
