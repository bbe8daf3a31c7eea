"""Shared test helpers: spawning real workers with small option sets."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import swayhost
from swayhost import ModelSpec, WorkerOptions

TESTS = Path(__file__).resolve().parent
PLUGINS = TESTS / "plugins"
FAKE_WORKERS = TESTS / "fake_workers"


def spawn_dummy(**options: str) -> swayhost.RemoteBackend:
    """A real dummy worker process, with ``options`` passed to its Load."""
    return swayhost.spawn(
        ModelSpec(kind="dummy", base="toy", worker=WorkerOptions(options=options))
    )


def plugin_worker(**overrides: object) -> WorkerOptions:
    """Worker options whose PYTHONPATH lets a custom worker import tests/plugins."""
    path = os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")])
    return WorkerOptions(env={"PYTHONPATH": path}, **overrides)  # type: ignore[arg-type]


def fake_worker(script: str, **overrides: object) -> WorkerOptions:
    """Run one of tests/fake_workers/*.py as the worker command."""
    return WorkerOptions(
        command=(sys.executable, str(FAKE_WORKERS / script)),
        **overrides,  # type: ignore[arg-type]
    )


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); read its state.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"
