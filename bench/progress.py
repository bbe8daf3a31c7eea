"""Progress while a run goes on: a rich bar per phase, or nothing (tests).

A full run takes minutes; a bar per phase (a model's sweep, the start-up
reps) shows where it is and how fast it moves, which on a shared machine
also tells whether another tenant is slowing it down.

The bars are redrawn only when a step ends (``auto_refresh=False``), between
timed calls: rich's refresh thread would otherwise take the GIL ten times a
second in this process, slowing the in-process side and not the worker.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

Tick = Callable[[], None]


class Steps:
    """Phases of a run. Without a rich ``Progress`` every call is a no-op."""

    def __init__(self, progress: Any = None) -> None:
        self._progress = progress

    @contextmanager
    def phase(self, description: str, total: int) -> Iterator[Tick]:
        """A bar of ``total`` steps; the yielded callable advances it by one."""
        progress = self._progress
        if progress is None:
            yield lambda: None
            return
        task = progress.add_task(description, total=max(1, total))
        progress.refresh()
        start = time.perf_counter()

        def tick() -> None:
            progress.advance(task)
            progress.refresh()

        try:
            yield tick
        finally:
            progress.update(task, completed=max(1, total))
            progress.refresh()
            if not progress.console.is_terminal:  # no live bars in a log: a line per phase
                progress.console.log(f"{description}: {time.perf_counter() - start:.1f} s")

    def note(self, message: str) -> None:
        """A line above the bars (a result worth seeing before the end)."""
        if self._progress is not None:
            self._progress.console.log(message)


@contextmanager
def rich_steps() -> Iterator[Steps]:
    """Steps shown with rich bars (spinner, bar, count, elapsed) on the console."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        auto_refresh=False,
    ) as progress:
        yield Steps(progress)
