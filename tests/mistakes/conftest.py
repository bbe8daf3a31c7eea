"""Fixtures shared by the mistakes suite."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


@pytest.fixture
def home(tmp_path: Path) -> dict[str, str]:
    """An environment with no host config file and private cache and state folders."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("SWAYHOST_CONFIG", "SWAYHOST_CACHE_DIR", "SWAYHOST_STATE_DIR")
    }
    return {
        **env,
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        "XDG_STATE_HOME": str(tmp_path / "state"),
    }
