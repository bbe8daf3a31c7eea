"""Where the host keeps what it builds: one cache folder for envs and fixtures.

``$SWAYHOST_CACHE_DIR`` when set (tests point it at a temporary folder),
else ``$XDG_CACHE_HOME/sway-plugin-host`` (``~/.cache/sway-plugin-host``).
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "SWAYHOST_CACHE_DIR"


def cache_dir() -> Path:
    """The host's cache folder (not created here)."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root).expanduser() / "sway-plugin-host"
