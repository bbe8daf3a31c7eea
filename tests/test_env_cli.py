"""``swayhost env list | create | gc``, ``swayhost workers`` and the demo's env, end to end.

The CLI runs as a subprocess with its own cache folder and host config file,
as a user would run it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from swayhost.config import CONFIG_ENV
from swayhost.demo import DEMO_ENV, hf_worker
from swayhost.envs.ensure import provision
from swayhost.paths import CACHE_ENV

pytestmark = pytest.mark.slow


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Cache and config for this test (and the CLI it runs); the config starts empty."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "swayhost.yaml"))
    (tmp_path / "swayhost.yaml").write_text("workers: {}\n", encoding="utf-8")
    return tmp_path


def configure(home: Path, text: str) -> None:
    (home / "swayhost.yaml").write_text(text, encoding="utf-8")


def swayhost(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "swayhost", *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=os.environ.copy(),
    )


def as_json(*args: str) -> Any:
    out = swayhost(*args, "--json")
    assert out.returncode == 0, out.stderr + out.stdout
    return json.loads(out.stdout)


def test_env_create_list_gc(home: Path) -> None:
    configure(home, "workers:\n  hf:\n    environment: {inherit: true}\n")
    (first,) = as_json("env", "create")
    (again,) = as_json("env", "create", "--kind", "hf")
    assert first["built"] and not again["built"]
    assert first["digest"] == again["digest"] and first["kind"] == "hf"
    (listed,) = as_json("env", "list")
    assert listed["digest"] == first["digest"] and listed["state"] == "complete"
    assert listed["name"] == "hf" and listed["spec"]["inherit"] is True
    assert listed["size_bytes"] > 0 and listed["last_used"]

    dry = as_json("env", "gc", "--all", "--dry-run")
    assert [e["removed"] for e in dry["envs"]] == [False] and dry["freed_bytes"] == 0
    assert as_json("env", "gc")["envs"] == [], "a fresh env is kept by the 30-day rule"
    configure(home, "workers: {}\n")
    gone = as_json("env", "gc", "--unreferenced")
    assert gone["envs"][0]["why"] == "not declared in the config"
    assert gone["freed_bytes"] == listed["size_bytes"]
    assert as_json("env", "list") == []


def test_env_create_needs_a_declared_env(home: Path) -> None:
    configure(home, f"workers:\n  dummy:\n    python: {sys.executable}\n")
    out = swayhost("env", "create", "--kind", "dummy")
    assert out.returncode == 1
    assert "workers.dummy" in out.stderr and "declares no `environment:`" in out.stderr


def test_gc_rejects_a_malformed_age(home: Path) -> None:
    out = swayhost("env", "gc", "--older-than", "soon")
    assert out.returncode == 2 and "not an age like 30d" in out.stderr


def test_workers_table(home: Path) -> None:
    configure(
        home,
        f"workers:\n  dummy:\n    python: {sys.prefix}\n"
        "  hf:\n    environment: {inherit: true, requirements: [six]}\n",
    )
    out = swayhost("workers", "--json")
    assert out.returncode == 1, "a worker whose env is not built fails the check"
    rows = {row["kind"]: row for row in json.loads(out.stdout)}
    dummy, hf = rows["dummy"], rows["hf"]
    assert dummy["state"] == "ok" and dummy["interpreter"].startswith(sys.prefix)
    assert dummy["framework_versions"]["python"] == sys.version.split()[0]
    assert not dummy["loaded"] and dummy["protocols"] == []
    assert hf["state"] == "not built" and "swayhost env create --kind hf" in hf["error"]

    (loaded,) = as_json("workers", "--kind", "dummy", "--base", "toy")
    assert loaded["loaded"] and "DifferentialBackend" in loaded["protocols"]
    assert loaded["capabilities"]["scalable"] is True


def test_demo_runs_its_hf_worker_in_a_provisioned_env(home: Path) -> None:
    configure(home, "workers: {}\n")
    options = hf_worker(None)
    cache = home / "cache" / "envs"
    assert options.python is not None and Path(options.python).is_relative_to(cache)
    hit = provision(DEMO_ENV)
    assert not hit.built and str(hit.python) == options.python
