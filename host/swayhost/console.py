"""What the CLI shows people: tables that wrap, and long steps that say what they do.

Tables: a piped ``rich`` console is 80 columns wide and cut long cells with
"…", so a path or a protocol name came out truncated. Every column here folds
instead: the whole value is printed, over several lines if it must be
(scripts should read ``--json``).

Steps: building an env, the demo's tiny model or a worker's Load takes
seconds to minutes, and used to be silent. ``step`` shows a spinner on a
terminal and, as pip and uv do when piped, plain lines otherwise, on stderr
so stdout stays the command's result.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from rich.table import Table


def table(title: str, *columns: str) -> Table:
    """A table whose columns wrap long values rather than cut them."""
    from rich.table import Table

    made = Table(title=title)
    for column in columns:
        made.add_column(column, overflow="fold")
    return made


def print_table(made: Table) -> None:
    """Print ``made`` on stdout."""
    from rich.console import Console

    Console().print(made)


@contextmanager
def step(message: str, *, stream: TextIO | None = None) -> Iterator[None]:
    """Say that ``message`` is under way, and when it is done, how long it took.

    On a terminal: a ``rich`` spinner, then one line. Otherwise two plain
    lines, ``swayhost: <message>...`` and ``swayhost: <message>: done in
    1.2s``, so a log shows where a slow run spent its time.
    """
    out = stream if stream is not None else sys.stderr
    started = time.monotonic()
    if out.isatty():
        from rich.console import Console

        console = Console(file=out)
        with console.status(f"{message}..."):
            yield
        console.print(f"{message}: done in {time.monotonic() - started:.1f}s", highlight=False)
        return
    _line(out, f"swayhost: {message}...")
    yield
    _line(out, f"swayhost: {message}: done in {time.monotonic() - started:.1f}s")


def _line(out: TextIO, text: str) -> None:
    """One write per line: a step may run on a thread (a worker starting in the
    background), and ``print`` writes the text and its newline separately."""
    out.write(text + "\n")
    out.flush()
