"""Session fixture ``mlx_python``: the interpreter of a provisioned env with the MLX stack;
module fixture ``mlx_server``: ``mlx_lm.server`` on the tiny model, from that env.

The MLX worker and ``mlx_lm.server`` run in an env of their own
(``swayhost.envs``), as a user's would, so the project's .venv stays free of
mlx. It is built on first use (a minute or so) and reused by every later
run; the spec pins what the tests were checked against.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from swayhost import envs
from swayworker.hf.tiny import TinyModel

from tests.servers import free_port, running_server

MLX_ENV = envs.EnvSpec(requirements=("mlx[cpu]==0.32.4", "mlx-lm==0.32.2"), name="mlx-tests")


@pytest.fixture(scope="session")
def mlx_python() -> Path:
    return envs.ensure(MLX_ENV)


@pytest.fixture(scope="module")
def mlx_server(
    mlx_python: Path, tiny_model: TinyModel, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The root URL of ``mlx_lm.server`` serving the tiny model's base on loopback."""
    port = free_port()
    argv = [str(mlx_python), "-m", "mlx_lm.server", "--model", str(tiny_model.base_dir)]
    argv += ["--host", "127.0.0.1", "--port", str(port)]
    log = tmp_path_factory.mktemp("mlx-server") / "server.log"
    with running_server(argv, port=port, log=log) as url:
        yield url
