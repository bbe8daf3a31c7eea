"""Why a worker stopped serving: signal, exit code, out of memory, hang.

The cause goes into the error a caller sees when recovery gives up, into
the log and into the stats, so it is phrased for a person ("was killed
with signal SIGKILL") and also carries a short ``kind`` for counting.
Whether a worker ran out of memory is read from what it said last: a
Python ``MemoryError`` traceback, an allocator's ``bad_alloc``, a CUDA
"out of memory". A SIGKILL from the kernel's OOM killer leaves no such
trace, so the SIGKILL wording names it as one possibility.
"""

from __future__ import annotations

import re
import signal
from collections.abc import Sequence
from dataclasses import dataclass

_OOM = re.compile(r"MemoryError|out of memory|bad_alloc|Cannot allocate memory", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class ExitCause:
    """How a worker ended: ``kind`` for counting, ``text`` for people."""

    kind: str
    """One of signal, code, oom, hang, unhealthy, disconnected, start_failed."""
    text: str

    @staticmethod
    def hang(seconds: float) -> ExitCause:
        return ExitCause("hang", f"hung: no answer within {seconds:.3g}s, so it was killed")

    @staticmethod
    def unhealthy(failures: int) -> ExitCause:
        return ExitCause("unhealthy", f"failed {failures} health checks in a row, so it was killed")

    @staticmethod
    def disconnected(detail: str) -> ExitCause:
        return ExitCause(
            "disconnected", f"dropped its connection while running ({detail}), so it was killed"
        )

    @staticmethod
    def start_failed(error: BaseException) -> ExitCause:
        return ExitCause("start_failed", f"could not be restarted: {error}")


def exit_cause(returncode: int, stderr_tail: Sequence[str]) -> ExitCause:
    """The cause of an exit with ``returncode`` (negative: killed by that signal)."""
    if returncode < 0:
        try:
            how = f"signal {signal.Signals(-returncode).name}"
        except ValueError:
            how = f"signal {-returncode}"
    else:
        how = f"code {returncode}"
    if any(_OOM.search(line) for line in stderr_tail):
        return ExitCause("oom", f"ran out of memory and exited with {how}")
    if returncode == -signal.SIGKILL:
        return ExitCause(
            "signal", f"exited with {how} (sent by a user, a supervisor or the kernel OOM killer)"
        )
    return ExitCause("signal" if returncode < 0 else "code", f"exited with {how}")
