"""Where the host keeps what it builds and what it must remember.

The cache (envs, fixtures: rebuildable) is ``$SWAYHOST_CACHE_DIR`` when set
(tests point it at a temporary folder), else ``$XDG_CACHE_HOME/sway-plugin-host``
(``~/.cache/sway-plugin-host``). State that cannot be rebuilt (the records of
detached workers) is ``$SWAYHOST_STATE_DIR``, else
``$XDG_STATE_HOME/sway-plugin-host`` (``~/.local/state/sway-plugin-host``).
"""

from __future__ import annotations

import os
from pathlib import Path

from swayworker.xdg import project_dir

from swayhost.errors import CacheError

CACHE_ENV = "SWAYHOST_CACHE_DIR"
STATE_ENV = "SWAYHOST_STATE_DIR"


def cache_dir() -> Path:
    """The host's cache folder (not created here)."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    return project_dir("XDG_CACHE_HOME")


def state_dir() -> Path:
    """The host's state folder (not created here)."""
    explicit = os.environ.get(STATE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    return project_dir("XDG_STATE_HOME")


def writable(folder: Path, *, mode: int = 0o777) -> Path:
    """``folder``, created if missing; ``CacheError`` when it cannot be made or written.

    An unwritable ``XDG_CACHE_HOME`` used to surface as a raw
    ``PermissionError`` traceback from whichever step first wrote there; this
    names the folder and the variables that move it, once, up front.
    """
    try:
        folder.mkdir(mode=mode, parents=True, exist_ok=True)
    except OSError as exc:
        raise _unwritable(folder, exc.strerror or str(exc)) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise _unwritable(folder, "permission denied")
    return folder


def _unwritable(folder: Path, reason: str) -> CacheError:
    variable = STATE_ENV if _under(folder, state_dir()) else CACHE_ENV
    xdg = "XDG_STATE_HOME" if variable == STATE_ENV else "XDG_CACHE_HOME"
    return CacheError(
        f"cannot write the folder {folder}: {reason}; make it writable, or point "
        f"{variable} (or {xdg}) at a folder you can write"
    )


def _under(folder: Path, root: Path) -> bool:
    return folder == root or root in folder.parents
