"""``launcher`` and ``ray`` in the host config and WorkerOptions: parsed, and checked early."""

from __future__ import annotations

from pathlib import Path

import pytest
import swayhost
from swayhost import config
from swayhost.errors import ConfigError


def _options(tmp_path: Path, section: str) -> swayhost.WorkerOptions:
    path = tmp_path / "config.yaml"
    path.write_text(f"workers:\n  hf:\n{section}")
    return config.worker_options("hf", path)


def test_a_worker_section_can_place_its_worker_on_ray(tmp_path: Path) -> None:
    options = _options(
        tmp_path,
        "    launcher: ray\n"
        "    ray: {num_gpus: 1, resources: {a100: 0.5}, runtime_env: {pip: [peft]}, tls: true}\n",
    )
    assert options.launcher == "ray"
    assert options.ray == swayhost.RayOptions(
        num_gpus=1.0, resources={"a100": 0.5}, runtime_env={"pip": ["peft"]}, tls=True
    )
    assert options.ray.actor_options() == {
        "num_cpus": 1.0,
        "num_gpus": 1.0,
        "resources": {"a100": 0.5},
        "runtime_env": {"pip": ["peft"]},
    }


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ("    launcher: slurm\n", "unknown launcher 'slurm'"),
        ("    ray: {num_gpus: -1}\n", "expected a number >= 0"),
        ("    ray: {gpus: 1}\n", "did you mean 'num_gpus'"),
        ("    ray: {tls: sometimes}\n", "ray.tls"),
        ("    launcher: ray\n    python: /usr/bin/python3\n", "declare it under ray.runtime_env"),
    ],
)
def test_bad_launcher_settings_name_the_key_and_the_fix(
    tmp_path: Path, section: str, problem: str
) -> None:
    with pytest.raises(ConfigError, match=problem):
        _options(tmp_path, section)


def test_worker_options_refuse_combinations_that_cannot_work() -> None:
    with pytest.raises(ValueError, match="launcher must be one of local, ray"):
        swayhost.WorkerOptions(launcher="k8s")
    with pytest.raises(ValueError, match="a Ray worker lives as long as its actor"):
        swayhost.WorkerOptions(detach=True, launcher="ray")
    with pytest.raises(ValueError, match="detach is for a local worker without a standby"):
        swayhost.WorkerOptions(detach=True, recovery=swayhost.RecoveryPolicy(standby=True))
