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
