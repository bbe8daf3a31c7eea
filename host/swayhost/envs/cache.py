"""The on-disk cache of provisioned envs: layout, completeness, last use, size.

Layout under ``<cache dir>/envs/``::

    <hash>/venv/         the virtualenv (interpreter: venv/bin/python)
    <hash>/env.json      identity, spec and versions; written last: the completion marker
    <hash>/last-used     touched whenever a worker is about to run on the env (for gc)
    .locks/<hash>.lock   the env's file lock (see lock.py)
    .logs/<hash>.log     the last build's installer log

A virtualenv is not relocatable (its scripts and ``pyvenv.cfg`` hold
absolute paths), so it cannot be built in a staging folder and renamed into
place the way the tiny model is. It is built at its final path under the
env's lock instead, and ``env.json`` is written last, atomically: a folder
without it is an interrupted build, never mistaken for a usable env, and the
next builder (holding the lock) deletes it and starts again.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from swayhost.paths import cache_dir

MARKER = "env.json"
LAST_USED = "last-used"


def envs_root() -> Path:
    """``<cache dir>/envs``."""
    return cache_dir() / "envs"


@dataclass(frozen=True)
class CachedEnv:
    """One env folder in the cache, complete or not."""

    path: Path

    @property
    def digest(self) -> str:
        return self.path.name

    @property
    def python(self) -> Path:
        return self.path / "venv" / "bin" / "python"

    @property
    def venv(self) -> Path:
        return self.path / "venv"

    def complete(self) -> bool:
        return (self.path / MARKER).is_file()

    def meta(self) -> dict[str, Any]:
        """What ``env.json`` records; empty for an incomplete env."""
        try:
            loaded = json.loads((self.path / MARKER).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return loaded if isinstance(loaded, dict) else {}

    def mark_complete(self, meta: dict[str, Any]) -> None:
        """Write ``env.json`` through a temporary file and a rename: it appears whole or not."""
        fd, tmp = tempfile.mkstemp(prefix=".env-", dir=self.path)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(meta, handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.replace(tmp, self.path / MARKER)

    def touch(self) -> None:
        (self.path / LAST_USED).touch()

    def last_used(self) -> float:
        """Seconds since the epoch of the last use (the build counts as one)."""
        for name in (LAST_USED, MARKER):
            try:
                return (self.path / name).stat().st_mtime
            except OSError:
                continue
        try:
            return self.path.stat().st_mtime
        except OSError:
            return time.time()

    def size(self) -> int:
        """Bytes on disk, links not followed (an inherited env is small)."""
        total = 0
        for folder, _, files in os.walk(self.path):
            for name in files:
                try:
                    total += os.lstat(os.path.join(folder, name)).st_size
                except OSError:
                    continue
        return total

    def remove(self) -> None:
        """Delete the marker first, so a half-deleted env never looks complete."""
        (self.path / MARKER).unlink(missing_ok=True)
        shutil.rmtree(self.path, ignore_errors=True)


def cached_envs() -> list[CachedEnv]:
    """Every env folder in the cache, complete or not, by hash."""
    folder = envs_root()
    if not folder.is_dir():
        return []
    return [
        CachedEnv(p) for p in sorted(folder.iterdir()) if p.is_dir() and not p.name.startswith(".")
    ]


def log_path(root: Path, digest: str) -> Path:
    return root / ".logs" / f"{digest}.log"
