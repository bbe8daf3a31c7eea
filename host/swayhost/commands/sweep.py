"""``swayhost sweep SWAY_YAML --adapter DIR...``: sway's suite for every checkpoint of a run.

Exit codes: 0 every adapter ran (whatever the probes' verdicts, as ``sway
run``), 1 some adapter failed (its error in the summary, the others'
reports written), 2 a usage or spec error (nothing ran), 130 interrupted
(run it again to resume).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

from swayhost import sweepsummary
from swayhost.exitcodes import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from swayhost.sweep import Adapter, AdapterResult, SweepUsageError, expand_adapters, run_sweep

log = logging.getLogger("swayhost.sweep")


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "sweep",
        help="run a sway suite for every adapter of one base, through one worker",
        description=(
            "Run sway.yaml's suite for every adapter (checkpoint) on one warm worker, write "
            "one sway report per adapter and a summary table and plot across them. "
            "A rerun with the same --out resumes: finished adapters are not run again."
        ),
    )
    parser.add_argument("sway_yaml", type=Path, metavar="SWAY_YAML", help="the sway spec")
    parser.add_argument(
        "--adapter",
        action="extend",
        nargs="+",
        required=True,
        metavar="DIR",
        help="adapter folders or globs (quoted), e.g. 'run/checkpoint-*'; sorted naturally",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="where reports, journals and the summary go (default: sweep-<SWAY_YAML stem>)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="Ray workers in the pool when the host config says launcher: ray (default 2)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dlm_sway.core.errors import SwayError

    if args.workers < 1:
        print(f"error: --workers must be at least 1, got {args.workers}", file=sys.stderr)
        return EXIT_USAGE
    try:
        adapters = expand_adapters(args.adapter)
    except SweepUsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    out: Path = args.out or Path(f"sweep-{args.sway_yaml.stem}")
    out = out.expanduser().resolve()
    try:
        with _progress_for(len(adapters)) as progress:
            results = run_sweep(
                args.sway_yaml, adapters, out, progress=progress, ray_workers=args.workers
            )
    except (SwayError, SweepUsageError) as exc:  # sway's spec errors: coded as `sway run` does
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(
            f"sweep interrupted; finished reports are in {out}. Run the same command again "
            "to resume: finished adapters are skipped, the interrupted one resumes from "
            "its journal.",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    summary = sweepsummary.to_dict(results, args.sway_yaml.resolve(), out)
    sweepsummary.write_all(summary, out)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(sweepsummary.to_markdown(summary))
        print(f"reports, {sweepsummary.SUMMARY_MARKDOWN} and {sweepsummary.SUMMARY_PNG}: {out}")
    return EXIT_FAILED if summary["failed"] else EXIT_OK


def _progress_for(total: int) -> _LineProgress:
    """A live bar on a terminal, one log line per event otherwise (CI logs, pipes)."""
    return _RichProgress(total) if sys.stderr.isatty() else _LineProgress(total)


class _LineProgress:
    """One line on stderr per adapter started and finished."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.finished_count = 0
        self._lock = threading.Lock()

    def started(self, adapter: Adapter) -> None:
        self._say(f"sweep: {adapter.label}: running ({adapter.path})")

    def finished(self, result: AdapterResult) -> None:
        with self._lock:
            self.finished_count += 1
            count = f"[{self.finished_count}/{self.total}]"
        self._say(f"sweep: {count} {result.adapter.label}: {_outcome(result)}")

    def _say(self, line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    def __enter__(self) -> _LineProgress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None


class _RichProgress(_LineProgress):
    """rich's progress bar, with each finished adapter printed above it."""

    def __init__(self, total: int) -> None:
        super().__init__(total)
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self._bar = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
        )
        self._task = self._bar.add_task("sweep", total=total)

    def started(self, adapter: Adapter) -> None:
        self._bar.update(self._task, description=f"sweep: {adapter.label}")

    def finished(self, result: AdapterResult) -> None:
        self._bar.console.print(
            f"{result.adapter.label}: {_outcome(result)}", markup=False, highlight=False
        )
        self._bar.advance(self._task)

    def __enter__(self) -> _RichProgress:
        self._bar.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._bar.stop()


def _outcome(result: AdapterResult) -> str:
    if result.status == "failed":
        return f"FAILED: {result.error}"
    overall = (result.report or {}).get("score", {}).get("overall")
    score = f"overall {overall:.3f}" if isinstance(overall, float) else "no overall score"
    if result.status == "resumed":
        return f"already done ({score}), not run again"
    hits = result.calls.get("journal_hits", 0)
    resumed = f", {hits} results from the journal" if hits else ""
    return f"done in {result.seconds:.1f}s ({score}{resumed})"
