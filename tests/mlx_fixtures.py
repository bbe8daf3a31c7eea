"""Session fixture ``mlx_python``: an interpreter whose env has the MLX stack.

The one place that decides where the MLX worker runs in tests: a cached
venv (see ``tests.cached_venv``) with mlx[cpu], mlx-lm and this project's
worker package. When provisioned envs (``swayhost.envs``) land, only this
fixture changes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cached_venv import REPO, cached_venv, install_with_worker

MLX_REQUIREMENTS = ("mlx[cpu]==0.32.4", "mlx-lm==0.32.2")


def _install(python: Path, env_dir: Path) -> None:
    install_with_worker(python, *MLX_REQUIREMENTS)


@pytest.fixture(scope="session")
def mlx_python() -> Path:
    return cached_venv("mlx", (*MLX_REQUIREMENTS, str(REPO)), _install)
