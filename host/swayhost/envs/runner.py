"""Run an installer step with a hard deadline.

Installers spawn their own children (build backends, resolvers), and a
stalled download can otherwise block for pip's whole retry schedule, so each
step runs in its own process group and the whole group is killed when the
deadline passes or the host is interrupted. Nothing is read from the
terminal (stdin is closed), so a credentials prompt cannot hang a build.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


class StepTimeout(Exception):
    """The step ran past its deadline and was killed; ``output`` is what it printed."""

    def __init__(self, output: str) -> None:
        super().__init__("timed out")
        self.output = output


@dataclass(frozen=True)
class StepResult:
    returncode: int
    output: str
    """stdout and stderr, interleaved as printed."""


def run_step(
    argv: Sequence[str],
    *,
    timeout: float,
    cwd: Path,
    pass_fds: Sequence[int] = (),
    env: Mapping[str, str] | None = None,
) -> StepResult:
    """Run ``argv`` to completion within ``timeout`` seconds, or kill it (``StepTimeout``).

    ``pass_fds`` are descriptors the step inherits (the env's lock); ``env``
    holds variables set on top of this process's environment.
    """
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        cwd=cwd,
        pass_fds=tuple(pass_fds),
        env={**os.environ, **env} if env else None,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=max(timeout, 0.1))
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        output, _ = proc.communicate()
        raise StepTimeout(output or "") from None
    except BaseException:
        _kill_group(proc)
        proc.wait()
        raise
    return StepResult(proc.returncode, output or "")


def _kill_group(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
