"""Virtual environments for tests, built once per machine and cached.

The MLX stack and llama.cpp's server must not live in the project's .venv
(the host environment stays free of them), and building them costs minutes
(llama-cpp-python compiles from source), so each is built once under the
user cache dir and reused by every later run, CI's included.

Safe under concurrency and interruption: builders of the same env take a
file lock, and an env counts as built only once its completion marker
exists, written last; a half-built env found under the lock is removed and
rebuilt. The caller's key must cover everything that changes what gets
installed (for an env with this project installed editable: this checkout's
path, ``REPO``).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MARKER = "COMPLETE.json"
WORKER_DEPS = ("grpcio", "grpcio-health-checking", "protobuf", "numpy")
"""What the worker SDK imports besides the standard library."""


def cache_root() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "sway-plugin-host" / "test-envs"


def dev_pins(names: Sequence[str] = WORKER_DEPS) -> list[str]:
    """``name==version`` for ``names``, as pinned in requirements-dev.txt (one source of pins)."""
    pins = {}
    for line in (REPO / "requirements-dev.txt").read_text().splitlines():
        name, sep, _ = line.partition("==")
        if sep:
            pins[name.strip().lower()] = line.strip()
    return [pins[name] for name in names]


def cached_venv(name: str, key: Sequence[str], install: Callable[[Path, Path], None]) -> Path:
    """The env's interpreter, building the env with ``install(python, env_dir)`` if needed."""
    digest = hashlib.sha256(json.dumps(list(key)).encode()).hexdigest()[:12]
    env_dir = cache_root() / f"{name}-{digest}"
    python = env_dir / "bin" / "python"
    if (env_dir / MARKER).is_file():
        return python
    with _locked(cache_root() / f"{name}-{digest}.lock"):
        if (env_dir / MARKER).is_file():
            return python
        shutil.rmtree(env_dir, ignore_errors=True)
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True)
        install(python, env_dir)
        marker = {"key": list(key), "seconds": round(time.monotonic() - started, 1)}
        (env_dir / MARKER).write_text(json.dumps(marker) + "\n")
    return python


def pip_install(python: Path, *args: str, env: dict[str, str] | None = None) -> None:
    """``pip install`` into the env, quietly, failing loudly with pip's own output."""
    result = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    if result.returncode != 0:
        raise RuntimeError(f"pip install {' '.join(args)} failed:\n{result.stderr[-4000:]}")


def install_with_worker(python: Path, *requirements: str) -> None:
    """``requirements`` plus this checkout's worker package (editable, no host deps)."""
    pip_install(python, *requirements, *dev_pins())
    pip_install(python, "--no-deps", "-e", str(REPO))


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
