"""Finding and checking Python interpreters for workers and their envs.

A path on PATH is no proof of a working interpreter (a pyenv shim for a
version that is not selected exists and fails), so every candidate is run
once, with a deadline, and must report a version the worker SDK supports.
The probe also says whether ``swayworker`` imports there, which decides
whether an existing interpreter can run a worker as is.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

MIN_VERSION = (3, 11)
PROBE_TIMEOUT = 20.0

_PROBE = (
    "import importlib.util, json, os, platform, sys; print(json.dumps({"
    "'version': platform.python_version(), 'path': os.path.realpath(sys.executable), "
    "'worker': importlib.util.find_spec('swayworker') is not None}))"
)


class InterpreterError(Exception):
    """Not a usable interpreter; the message says what is wrong (the caller adds the fix)."""


@dataclass(frozen=True)
class Interpreter:
    """A probed interpreter: ``executable`` as given (a venv's symlink kept), its real path."""

    executable: str
    path: str
    version: str
    has_worker: bool

    @property
    def minor(self) -> str:
        """``"3.11"`` for 3.11.7."""
        return ".".join(self.version.split(".")[:2])


def executable_in(path: Path) -> Path:
    """The interpreter a path names: itself, or ``bin/python`` of a virtualenv folder."""
    if path.is_dir():
        candidate = path / "bin" / "python"
        if not candidate.exists():
            raise InterpreterError(f"{str(path)!r} is a folder but no virtualenv (no bin/python)")
        return candidate
    return path


def probe(executable: str, *, env: Mapping[str, str] | None = None) -> Interpreter:
    """Run ``executable`` once and describe it; ``InterpreterError`` when it is unusable."""
    merged = {**os.environ, **env} if env else None
    try:
        out = subprocess.run(
            [executable, "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT,
            env=merged,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise InterpreterError(
            f"{executable!r} did not answer within {PROBE_TIMEOUT:g}s; is it a Python interpreter?"
        ) from None
    except OSError as exc:
        raise InterpreterError(f"{executable!r} cannot be run ({exc.strerror})") from exc
    try:
        facts = json.loads(out.stdout.strip().splitlines()[-1])
        interpreter = Interpreter(executable, facts["path"], facts["version"], facts["worker"])
    except (IndexError, ValueError, KeyError, TypeError):
        lines = (out.stderr.strip() or out.stdout.strip()).splitlines() or ["nothing"]
        # A shell's "command not found" (127) leads with its reason; Python ends with it.
        said = lines[0] if out.returncode == 127 else lines[-1]
        raise InterpreterError(
            f"{executable!r} is not a working Python interpreter (exit {out.returncode}: "
            f"{said.strip()[:200]})"
        ) from None
    if tuple(int(p) for p in interpreter.version.split(".")[:2]) < MIN_VERSION:
        floor = ".".join(map(str, MIN_VERSION))
        raise InterpreterError(
            f"{executable!r} is Python {interpreter.version}; workers need Python {floor} or newer"
        )
    return interpreter


def find(request: str | None) -> Interpreter:
    """The interpreter for a spec's ``python``: the host's, a path, or a version on PATH.

    A version ``3.12`` (or ``3.12.1``) is looked up as ``python3.12`` on PATH
    and must report that version when run.
    """
    if request is None:
        return probe(sys.executable)
    if "/" in request:
        return probe(str(executable_in(Path(request).expanduser())))
    minor = ".".join(request.split(".")[:2])
    found = shutil.which(f"python{minor}")
    if found is None:
        raise InterpreterError(f"no Python {request} was found (no python{minor} on PATH)")
    try:
        interpreter = probe(found)
    except InterpreterError as exc:
        raise InterpreterError(
            f"no working Python {request} was found: python{minor} on PATH fails ({exc})"
        ) from exc
    if not (interpreter.version + ".").startswith(request + "."):
        raise InterpreterError(
            f"python{minor} on PATH is Python {interpreter.version}, not {request}"
        )
    return interpreter
