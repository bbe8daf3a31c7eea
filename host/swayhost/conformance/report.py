"""Rendering a conformance report: one readable line per check, or JSON.

Lines are printed as checks finish (a slow worker shows progress), each with
its verdict, name and the reason; the summary line at the end says whether
the worker conforms.
"""

from __future__ import annotations

import json

from rich.console import Console
from rich.markup import escape

from swayhost.conformance.result import CheckResult, Report

_MARKS = {"pass": "[green]✓ pass[/]", "fail": "[bold red]✗ FAIL[/]", "skip": "[yellow]- skip[/]"}


def print_result(console: Console, result: CheckResult) -> None:
    """One line: verdict, check name, and what it saw or why it failed."""
    console.print(
        f"{_MARKS[result.status]}  [bold]{escape(result.name)}[/]  {escape(result.detail)}"
        f" [dim]({result.seconds:.2f}s)[/]",
        highlight=False,
    )


def print_summary(console: Console, report: Report) -> None:
    verdict = "[bold green]CONFORMS[/]" if report.passed else "[bold red]DOES NOT CONFORM[/]"
    counts = f"{report.count('pass')} passed, {report.count('fail')} failed, " + (
        f"{report.count('skip')} skipped"
    )
    kind = f" ({escape(report.worker_kind)})" if report.worker_kind else ""
    if report.transport:
        kind += f" over {report.transport}"
    console.print(f"{verdict}{kind}: {counts}", highlight=False)


def to_json(report: Report) -> str:
    return json.dumps(report.to_json(), indent=2)
