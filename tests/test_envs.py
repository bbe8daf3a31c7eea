"""Provisioned worker envs: identity and hash, build, cache hits, locking, errors, gc.

Every test gets its own cache folder (``SWAYHOST_CACHE_DIR``) and no user
config. Builds use ``inherit: true`` (pip adds only what the host lacks) or
uv for an env of its own, so each takes seconds. The failure tests check
the kind of error, that it names the env and the fix, that it comes within a
bound, and that no worker process is ever started on the broken env.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import swayhost
from dlm_sway.core.errors import SpecValidationError
from dlm_sway.core.model import ModelSpec as SwayModelSpec
from swayhost import envs
from swayhost import sway as host_sway
from swayhost.config import worker_options
from swayhost.envs.ensure import provision, resolve
from swayhost.envs.installers import choose
from swayhost.envs.lock import EnvLock
from swayhost.envs.spec import EnvSpec
from swayhost.errors import ConfigError, EnvError
from swayhost.paths import CACHE_ENV
from swayhost.process import WorkerProcess

OFFLINE_INDEX = "http://127.0.0.1:9/simple"
"""Nothing listens on the discard port: connections are refused at once."""

LAYERED = EnvSpec(inherit=True, name="layered")
"""The cheapest env: it inherits everything the worker package needs."""


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh cache folder and no host config file, for this test and its subprocesses."""
    root = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(root))
    monkeypatch.delenv("SWAYHOST_CONFIG", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-config"))
    return root


@pytest.fixture
def no_worker_starts(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Records every worker start; a test asserts the list stays empty."""
    started: list[str] = []
    original = WorkerProcess.start

    def start(self: WorkerProcess) -> object:
        started.append(self.name)
        return original(self)

    monkeypatch.setattr(WorkerProcess, "start", start)
    yield started


# -- identity -------------------------------------------------------------------


def test_equivalent_specs_share_a_hash_and_labels_do_not_count() -> None:
    one = EnvSpec(requirements=("Six==1.16.0", "packaging>=20"), inherit=True, name="a")
    two = EnvSpec(
        requirements=("packaging >= 20", "six==1.16.0", "six == 1.16.0"),
        inherit=True,
        name="b",
        installer="pip",
        timeout=10,
    )
    assert two.requirements == ("packaging>=20", "six==1.16.0")
    assert resolve(one).digest == resolve(two).digest
    assert resolve(one).digest != resolve(EnvSpec(requirements=("six==1.16.0",))).digest
    inherited = resolve(LAYERED).identity["inherit"]
    assert inherited and all(Path(p).is_dir() for p in inherited)


def test_install_env_counts_in_the_hash_when_set() -> None:
    cuda = EnvSpec(install_env={"CMAKE_ARGS": "-DGGML_CUDA=on", "CC": "gcc"})
    reordered = EnvSpec(install_env={"CC": "gcc", "CMAKE_ARGS": "-DGGML_CUDA=on"})
    cpu = EnvSpec(install_env={"CMAKE_ARGS": "-DGGML_CUDA=off", "CC": "gcc"})
    assert resolve(cuda).digest == resolve(reordered).digest != resolve(cpu).digest
    # Unset, it is no part of the identity: envs declared before it keep their hash.
    assert "install_env" not in resolve(EnvSpec()).identity


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"requirements": ("transformers=4",)}, "not a valid requirement"),
        ({"installer": "uv", "inherit": True}, "inherit: true needs the pip installer"),
        ({"installer": "uv", "pip_args": ("--timeout", "2")}, "pip_args are pip's"),
        ({"python": "three"}, "neither a version"),
        ({"installer": "conda"}, "not one of auto, uv, pip"),
        ({"install_env": {"CMAKE_ARGS=": "-DX=1"}}, "invalid variable name 'CMAKE_ARGS='"),
    ],
)
def test_spec_rejects_what_it_cannot_build(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        EnvSpec(**fields)  # type: ignore[arg-type]


# -- building, cache hits, interruption, concurrency -------------------------------


@pytest.mark.slow
def test_build_then_cache_hit(cache: Path) -> None:
    built = provision(LAYERED)
    assert built.built and built.env.complete()
    assert built.python == cache / "envs" / built.env.digest / "venv" / "bin" / "python"
    hit = provision(LAYERED)
    assert not hit.built and hit.python == built.python
    assert hit.seconds < 1.0, f"a cache hit took {hit.seconds:.3f}s"
    print(f"\nbuild {built.seconds:.2f}s, cache hit {hit.seconds * 1000:.0f} ms")
    meta = built.env.meta()
    assert meta["installer"] == "pip" and meta["spec"]["inherit"] is True
    code = "import swayworker.server, swayplugin.v1.backend_pb2; print('ok')"
    out = subprocess.run([str(built.python), "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "ok", out.stderr


@pytest.mark.slow
def test_uv_builds_an_env_of_its_own_and_a_worker_runs_in_it() -> None:
    spec = EnvSpec(name="own")
    assert choose(spec).name == "uv"
    done = provision(spec)
    site = next(done.env.venv.glob("lib/python3*/site-packages"))
    assert (site / "grpc").is_dir(), "the worker's dependencies are installed in the env"
    assert not (site / "torch").exists()
    worker = swayhost.WorkerOptions(environment=spec)
    with swayhost.spawn(swayhost.ModelSpec(kind="dummy", base="toy", worker=worker)) as backend:
        assert backend.description.runtime.executable == str(done.python)
        assert "torch" not in backend.description.framework_versions


PROVISION = """
import json, sys
from swayhost.envs import EnvSpec, provision
done = provision(EnvSpec(inherit=True, name="layered"))
print(json.dumps({"built": done.built, "python": str(done.python)}))
"""


@pytest.mark.slow
def test_concurrent_builders_take_turns() -> None:
    procs = [
        subprocess.Popen([sys.executable, "-c", PROVISION], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert sorted(r["built"] for r in results) == [False, True]
    assert results[0]["python"] == results[1]["python"]


@pytest.mark.slow
def test_a_killed_build_is_rebuilt_not_reused(cache: Path) -> None:
    """SIGKILL the host mid-install: its orphaned installer still holds the env's lock,
    so the next builder waits for it, then deletes the unfinished folder and rebuilds."""
    proc = subprocess.Popen([sys.executable, "-c", PROVISION], start_new_session=True)
    venv = cache / "envs" / resolve(LAYERED).digest / "venv"
    deadline = time.monotonic() + 60
    while not (venv / "bin" / "python").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # into the install step
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    (left,) = envs.cached_envs()
    assert not left.complete(), "a killed build must not look complete"
    done = provision(LAYERED)
    assert done.built and done.env.complete()


# -- errors: each names the env and the fix, comes fast, starts no worker -------


def _spawn_dummy_in(spec: EnvSpec) -> EnvError:
    worker = swayhost.WorkerOptions(environment=spec)
    with pytest.raises(EnvError) as info:
        swayhost.spawn(swayhost.ModelSpec(kind="dummy", base="toy", worker=worker))
    return info.value


@pytest.mark.slow
@pytest.mark.parametrize("installer", ["pip", "uv"])
def test_unresolvable_requirement(installer: str, no_worker_starts: list[str]) -> None:
    spec = EnvSpec(
        requirements=("transformers==99.0",),
        inherit=installer == "pip",
        installer=installer,
        name="broken",
    )
    started = time.monotonic()
    error = _spawn_dummy_in(spec)
    assert time.monotonic() - started < 60
    assert error.reason == "unresolvable"
    text = str(error)
    assert text.startswith(f"environment 'broken' [{resolve(spec).digest}]")
    assert "transformers==99.0" in text and "fix or relax `requirements`" in text
    assert no_worker_starts == []
    assert envs.cached_envs() == [], "a failed build leaves no env folder"


@pytest.mark.slow
@pytest.mark.parametrize("installer", ["pip", "uv"])
def test_no_network(
    installer: str, no_worker_starts: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UV_HTTP_RETRIES", "0")
    pip_args = ("--isolated", "--timeout", "2", "--retries", "0") if installer == "pip" else ()
    spec = EnvSpec(
        requirements=("six==1.16.0",),
        inherit=installer == "pip",
        index_url=OFFLINE_INDEX,
        pip_args=pip_args,
        installer=installer,
        name="offline",
    )
    started = time.monotonic()
    error = _spawn_dummy_in(spec)
    elapsed = time.monotonic() - started
    assert elapsed < 30, f"took {elapsed:.1f}s"
    assert error.reason == "network", error
    assert "the package index cannot be reached" in str(error)
    assert "127.0.0.1:9" in str(error) and "index_url" in str(error)
    assert no_worker_starts == []


def test_a_python_that_does_not_exist(no_worker_starts: list[str]) -> None:
    error = _spawn_dummy_in(EnvSpec(python="3.99", name="future"))
    assert error.reason == "python"
    assert "environment 'future'" in str(error) and "no Python 3.99 was found" in str(error)
    assert "drop `python`" in str(error)
    assert no_worker_starts == []


def test_a_python_path_that_is_no_interpreter(tmp_path: Path, no_worker_starts: list[str]) -> None:
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho hello\n")
    fake.chmod(0o755)
    error = _spawn_dummy_in(EnvSpec(python=str(fake), name="fake"))
    assert error.reason == "interpreter"
    assert "is not a working Python interpreter" in str(error)
    assert "point `python` at a Python interpreter" in str(error)
    assert no_worker_starts == []


@pytest.mark.slow
def test_install_env_reaches_the_installer(cache: Path, no_worker_starts: list[str]) -> None:
    """pip reads PIP_NO_INDEX: set through install_env, it finds no package the host lacks."""
    spec = EnvSpec(
        requirements=("six==1.16.0",), inherit=True, install_env={"PIP_NO_INDEX": "1"}, name="nix"
    )
    error = _spawn_dummy_in(spec)
    assert error.reason == "unresolvable", error
    log = cache / "envs" / ".logs" / f"{resolve(spec).digest}.log"
    assert "Ignoring indexes" in log.read_text()
    assert no_worker_starts == []


@pytest.mark.slow
def test_a_build_past_its_timeout_is_stopped(no_worker_starts: list[str]) -> None:
    spec = EnvSpec(requirements=("transformers==4.57.6",), inherit=True, timeout=1.5, name="slow")
    started = time.monotonic()
    error = _spawn_dummy_in(spec)
    assert time.monotonic() - started < 10
    assert error.reason == "timeout" and "raise `timeout`" in str(error)
    assert envs.cached_envs() == [] and no_worker_starts == []


# -- gc --------------------------------------------------------------------------


@pytest.mark.slow
def test_gc_removes_unused_unfinished_and_skips_busy(cache: Path) -> None:
    done = provision(LAYERED)
    unfinished = cache / "envs" / "0123456789abcdef"
    (unfinished / "venv").mkdir(parents=True)
    picked = envs.collect(older_than=30 * 86400, dry_run=True)
    assert [(p.env.digest, p.removed) for p in picked] == [("0123456789abcdef", False)]
    old = time.time() - 40 * 86400
    os.utime(done.env.path / "last-used", (old, old))
    with EnvLock(cache / "envs", done.env.digest):
        busy = envs.collect(older_than=30 * 86400)
    assert {p.env.digest: p.removed for p in busy} == {
        "0123456789abcdef": True,
        done.env.digest: False,
    }
    (gone,) = envs.collect(older_than=30 * 86400)
    assert gone.removed and gone.why.startswith("unused for 40") and gone.size > 0
    assert envs.cached_envs() == []


# -- the host config's worker sections ----------------------------------------------


def write_config(tmp_path: Path, worker: str) -> Path:
    path = tmp_path / "swayhost.yaml"
    path.write_text(f"workers:\n  hf:\n{worker}", encoding="utf-8")
    return path


def test_config_declares_an_environment(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        "    environment:\n"
        "      requirements: [transformers==4.57.6]\n"
        "      extras: [hf]\n"
        "      python: '3.11'\n"
        "      inherit: true\n"
        "      find_links: [wheels, 'file:///srv/wheels']\n"
        "      pip_args: [--timeout, '5']\n"
        "      install_env: {CMAKE_ARGS: -DLLAVA_BUILD=OFF, MAX_JOBS: 2}\n"
        "      timeout: 60\n",
    )
    assert worker_options("hf", path).environment == EnvSpec(
        requirements=("transformers==4.57.6",),
        extras=("hf",),
        python="3.11",
        inherit=True,
        find_links=(str(tmp_path / "wheels"), "file:///srv/wheels"),
        pip_args=("--timeout", "5"),
        install_env={"CMAKE_ARGS": "-DLLAVA_BUILD=OFF", "MAX_JOBS": "2"},
        timeout=60.0,
        name="hf",
        origin=f"{path}: workers.hf.environment",
    )


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            "    environment: {python: 3.10}\n",
            "workers.hf.environment.python: 3.1 is a number; quote it",
        ),
        (
            "    environment: {requirement: [six]}\n",
            "workers.hf.environment.requirement: unknown key; did you mean 'requirements'?",
        ),
        (
            "    environment: {requirements: [six, 'transformers=4']}\n",
            "workers.hf.environment.requirements[1]: 'transformers=4' is not a valid requirement",
        ),
        (
            "    environment: {inherit: true, installer: uv}\n",
            "workers.hf.environment: inherit: true needs the pip installer",
        ),
        (
            f"    python: {sys.executable}\n    environment: {{inherit: true}}\n",
            "workers.hf: has both python and environment; keep one",
        ),
    ],
)
def test_config_environment_mistakes(tmp_path: Path, section: str, message: str) -> None:
    path = write_config(tmp_path, section)
    with pytest.raises(ConfigError, match=re.escape(f"{path}: {message}")):
        worker_options("hf", path)


def test_config_python_may_name_a_virtualenv_folder(tmp_path: Path) -> None:
    path = write_config(tmp_path, f"    python: {sys.prefix}\n")
    assert worker_options("hf", path).python == str(Path(sys.prefix) / "bin" / "python")


def _folder(path: Path) -> Path:
    path.mkdir(parents=True)
    return path


def _script(path: Path) -> Path:
    path.parent.mkdir(parents=True)
    path.write_text("#!/bin/sh\necho not python\n")
    path.chmod(0o755)
    return path


def _bare_venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_folder, "is a folder but no virtualenv (no bin/python)"),
        (lambda d: _script(d / "python"), "is not a working Python interpreter"),
        (lambda d: _bare_venv(d / "venv"), "cannot import swayworker"),
    ],
)
def test_config_python_that_cannot_run_a_worker(
    tmp_path: Path, make: Callable[[Path], Path], message: str
) -> None:
    target = make(tmp_path / "target")
    path = write_config(tmp_path, f"    python: {target}\n")
    with pytest.raises(ConfigError, match=re.escape(message)) as info:
        worker_options("hf", path)
    assert str(info.value).startswith(f"{path}: workers.hf.python: ")


@pytest.mark.parametrize("background", [True, False])
def test_sway_reports_a_broken_env_as_a_spec_error(
    background: bool,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    no_worker_starts: list[str],
) -> None:
    """Waited for (``background_start: false``) the build raises it; started in the
    background, every call that needs the worker does, beginning with the first."""
    start = f"    background_start: {str(background).lower()}\n"
    path = write_config(tmp_path, f"    environment: {{python: '3.99'}}\n{start}")
    monkeypatch.setenv("SWAYHOST_CONFIG", str(path))
    spec = SwayModelSpec(kind="custom", entry_point="swayhost.sway:HF", base="b", adapter=tmp_path)
    expected = f"environment 'hf' ({path}: workers.hf.environment): no Python 3.99 was found"
    with pytest.raises(SpecValidationError, match=re.escape(expected)):
        backend = host_sway.HF(spec, adapter_path=tmp_path)
        assert background, "a build that waits raises before returning"
        backend.preflight_finite_check()  # sway run's first call
    if background:
        with pytest.raises(SpecValidationError, match=re.escape(expected)):
            backend.cache_identity()
        backend.close()
    assert no_worker_starts == []
