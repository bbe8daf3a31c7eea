"""sway's own ``sway run`` through the host equals ``sway run`` in process.

The real CLI runs twice on the tiny model with the same probes: once with
``models.ft.kind: hf`` (sway's in-process backend, the reference) and once with
``kind: custom`` + ``entry_point: swayhost.sway:HF`` (a worker process, started
from a host config file). Every per-probe number of the ``--json`` reports
must agree. Also here: the host config file's validation, and sway's protocol
checks against a worker that serves less.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import sysconfig
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml
from dlm_sway.backends import build as sway_build
from dlm_sway.core.errors import SpecValidationError
from dlm_sway.core.model import ModelSpec as SwayModelSpec
from dlm_sway.core.scoring import (
    DifferentialBackend,
    NullCalibratedBackend,
    PreflightCheckable,
    ScalableDifferentialBackend,
)
from swayhost import sway as host_sway
from swayhost.config import CONFIG_ENV, worker_options
from swayhost.errors import ConfigError, UnsupportedCapabilityError
from swayhost.proxy import RemoteBackend
from swayhost.spec import WorkerOptions
from swayworker.hf.tiny import TinyModel

from tests.helpers import spawn_dummy, wait_until
from tests.test_host_is_light import HEAVY

pytestmark = pytest.mark.slow

SWAY = Path(sysconfig.get_path("scripts")) / "sway"
ENTRY_POINT = "swayhost.sway:HF"
MARKER_ENV = "SWAYHOST_TEST_RUN"
PROBES = ("baseline", "shift", "ablation", "drift", "preference")
TOLERANCE = 1e-6

SUITE: list[dict[str, Any]] = [
    {"name": "baseline", "kind": "null_adapter", "runs": 3, "cache": False},
    {"name": "shift", "kind": "delta_kl", "prompts": ["The river ran", "In the town"]},
    {
        "name": "ablation",
        "kind": "adapter_ablation",
        "prompts": ["The river ran"],
        "lambdas": [0.0, 0.5, 1.0, 1.25],
    },
    {"name": "drift", "kind": "calibration_drift", "items_limit": 4},
    {
        "name": "preference",
        "kind": "preference_flip",
        "triples": [
            {"prompt": "The baker sold", "chosen": " warm bread", "rejected": " cold stones"},
            {"prompt": "The dog barked", "chosen": " near the bridge", "rejected": " at noon"},
            {"prompt": "The librarian kept", "chosen": " a list", "rejected": " a horse"},
        ],
    },
]


def sway_yaml(tiny: TinyModel, ft_kind: dict[str, str]) -> dict[str, Any]:
    """The suite of this module for the tiny model; ``ft_kind`` picks the ft backend."""
    model = {"base": str(tiny.base_dir), "dtype": "fp32", "device": "cpu"}
    return {
        "version": 1,
        "models": {
            "base": {"kind": "hf", **model},
            "ft": {**ft_kind, **model, "adapter": str(tiny.adapter_dir)},
        },
        "defaults": {"seed": 0, "top_k": 32},
        "suite": SUITE,
    }


@dataclass
class SwayRun:
    returncode: int
    stdout: str
    stderr: str
    report: dict[str, Any]
    worker_pids: set[int]
    """Processes seen carrying this run's marker variable (set by the host config)."""
    survivors: set[int]
    """Those still alive right after ``sway run`` returned."""


def run_sway(spec: dict[str, Any], folder: Path, env: dict[str, str]) -> SwayRun:
    """``sway run SPEC --json REPORT``, watching for worker processes while it runs."""
    folder.mkdir(parents=True, exist_ok=True)
    spec_path, report_path = folder / "sway.yaml", folder / "report.json"
    spec_path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    marker = env.get(MARKER_ENV, "")
    seen: set[int] = set()
    with subprocess.Popen(
        [str(SWAY), "run", str(spec_path), "--json", str(report_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as proc:
        deadline = time.monotonic() + 240
        while proc.poll() is None and time.monotonic() < deadline:
            seen |= workers_marked(marker)
            time.sleep(0.2)
        stdout, stderr = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    survivors = workers_marked(marker)
    return SwayRun(proc.returncode, stdout, stderr, report, seen | survivors, survivors)


def workers_marked(marker: str) -> set[int]:
    """Pids of live ``swayworker.hf`` processes whose environment carries ``marker``."""
    if not marker:
        return set()
    found = set()
    for process in psutil.process_iter(["cmdline"]):
        if "swayworker.hf" not in (process.info["cmdline"] or []):
            continue
        try:
            if process.environ().get(MARKER_ENV) == marker and process.is_running():
                found.add(process.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def write_host_config(path: Path, marker: str, *, background_start: bool = True) -> Path:
    hf = {"python": sys.executable, "env": {MARKER_ENV: marker}}
    config = {"workers": {"hf": {**hf, "background_start": background_start}}}
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def runs(tiny_model: TinyModel, tmp_path_factory: pytest.TempPathFactory) -> dict[str, SwayRun]:
    """The reference run (in process) and the host run, once for the module."""
    root = tmp_path_factory.mktemp("sway-run")
    marker = uuid.uuid4().hex
    env = {
        **_base_env(),
        "XDG_CACHE_HOME": str(root / "cache"),
        CONFIG_ENV: str(write_host_config(root / "swayhost.yaml", marker)),
        MARKER_ENV: marker,
    }
    reference = sway_yaml(tiny_model, {"kind": "hf"})
    hosted = sway_yaml(tiny_model, {"kind": "custom", "entry_point": ENTRY_POINT})
    return {
        "reference": run_sway(reference, root / "reference", env),
        "host": run_sway(hosted, root / "host", env),
    }


def _base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in (CONFIG_ENV, MARKER_ENV)}


# -- the comparison ------------------------------------------------------------


def comparable(report: dict[str, Any]) -> dict[str, Any]:
    """The report's numbers and verdicts: everything but timings, paths and backend counters."""
    probes = {
        p["name"]: {k: v for k, v in p.items() if k != "duration_s"} for p in report["probes"]
    }
    return {"probes": probes, "null_stats": report["null_stats"], "score": report["score"]}


def flatten(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key in sorted(value):
            yield from flatten(value[key], f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from flatten(item, f"{path}[{index}]")
    else:
        yield path, value


def differences(reference: dict[str, Any], host: dict[str, Any]) -> tuple[list[str], float]:
    """Leaves that differ (floats beyond ``TOLERANCE``), and the largest float difference."""
    ref, got = dict(flatten(comparable(reference))), dict(flatten(comparable(host)))
    problems = [f"{k}: only in {'reference' if k in ref else 'host'}" for k in ref.keys() ^ got]
    max_diff = 0.0
    for key in sorted(ref.keys() & got.keys()):
        a, b = ref[key], got[key]
        if isinstance(a, float) and isinstance(b, float):
            diff = float_diff(a, b)
            if not diff <= TOLERANCE:
                problems.append(f"{key}: reference {a!r}, host {b!r}")
                continue
            max_diff = max(max_diff, diff)
        elif a != b:
            problems.append(f"{key}: reference {a!r}, host {b!r}")
    return problems, max_diff


def float_diff(a: float, b: float) -> float:
    """``|a - b|``; 0 for equal infinities and for two NaNs, NaN for NaN against a number."""
    if a == b or (math.isnan(a) and math.isnan(b)):
        return 0.0
    return abs(a - b)


def test_both_runs_succeed(runs: dict[str, SwayRun]) -> None:
    for label, run in runs.items():
        assert run.returncode == 0, f"{label} run failed:\n{run.stderr[-3000:]}"
        assert [p["name"] for p in run.report["probes"]] == list(PROBES)


def test_host_run_equals_in_process_run(runs: dict[str, SwayRun]) -> None:
    problems, max_diff = differences(runs["reference"].report, runs["host"].report)
    assert not problems, "\n".join(problems[:40])
    assert max_diff <= TOLERANCE


def test_probes_really_ran_through_a_worker(runs: dict[str, SwayRun]) -> None:
    host = runs["host"]
    verdicts = {p["name"]: p["verdict"] for p in host.report["probes"]}
    assert not set(verdicts.values()) & {"skip", "error"}, verdicts
    baseline = host.report["probes"][0]
    assert baseline["evidence"]["from_cache"] is False
    assert set(baseline["evidence"]["calibrated_kinds"]) >= {"delta_kl", "calibration_drift"}
    # The host run reports sway's counters too, filled from the host's and worker's own.
    reference_stats = runs["reference"].report["backend_stats"]
    assert list(host.report["backend_stats"]) == list(reference_stats)
    assert host.report["backend_stats"]["forward_passes"] > 0
    assert reference_stats["forward_passes"] > 0
    # The worker ran, with the environment the host config file gave it.
    assert host.worker_pids, "no swayworker.hf process carried the config's env"
    assert not runs["reference"].worker_pids


def test_no_worker_survives_sway_run(runs: dict[str, SwayRun]) -> None:
    assert runs["host"].survivors == set()


# -- errors surface as sway's, through the CLI ---------------------------------


@pytest.fixture(autouse=True)
def no_user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process tests never read the developer's own host config file."""
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))


def test_bad_host_config_is_a_spec_error_in_sway_run(tiny_model: TinyModel, tmp_path: Path) -> None:
    config = tmp_path / "swayhost.yaml"
    config.write_text("workers:\n  hf:\n    python: /no/such/python\n", encoding="utf-8")
    spec = sway_yaml(tiny_model, {"kind": "custom", "entry_point": ENTRY_POINT})
    run = run_sway(spec, tmp_path, {**_base_env(), CONFIG_ENV: str(config)})
    assert run.returncode == 2, run.stderr
    assert f"{config}: workers.hf.python: '/no/such/python' does not exist" in run.stderr


def test_missing_adapter_keeps_sways_error(tiny_model: TinyModel) -> None:
    spec = SwayModelSpec(kind="custom", entry_point=ENTRY_POINT, base=str(tiny_model.base_dir))
    with pytest.raises(SpecValidationError, match="hf backend requires an adapter path"):
        sway_build(spec)


# -- sway's protocol checks see exactly what the worker serves -----------------


def _eager(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A host config that makes sway's build wait for the worker (``background_start: false``)."""
    config = tmp_path / "swayhost.yaml"
    config.write_text("workers:\n  hf:\n    background_start: false\n", encoding="utf-8")
    monkeypatch.setenv(CONFIG_ENV, str(config))


def _hf(tmp_path: Path) -> SwayModelSpec:
    return SwayModelSpec(kind="custom", entry_point=ENTRY_POINT, base="toy", adapter=tmp_path)


@pytest.mark.parametrize("kept", ["", "scalable", "null,preflight"])
def test_optional_protocols_follow_the_worker(
    kept: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _eager(tmp_path, monkeypatch)
    monkeypatch.setattr(host_sway, "build", lambda spec: spawn_dummy(protocols=kept))
    backend = sway_build(_hf(tmp_path))
    try:
        assert isinstance(backend, host_sway.HF)
        assert isinstance(backend, DifferentialBackend)
        assert isinstance(backend, ScalableDifferentialBackend) == ("scalable" in kept)
        assert isinstance(backend, NullCalibratedBackend) == ("null" in kept)
        assert isinstance(backend, PreflightCheckable) == ("preflight" in kept)
        expected = ["DifferentialBackend"]
        expected += ["NullCalibratedBackend"] if "null" in kept else []
        expected += ["ScalableDifferentialBackend"] if "scalable" in kept else []
        assert list(backend.__sway_protocols__) == expected
        with backend.as_base() as view:
            assert view.logprob_of("a b", " c") < 0
    finally:
        backend.close()
    assert backend.cache_identity()


# -- the worker starts while sway goes on (background_start, the default) ------


def test_sways_build_returns_while_the_worker_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()

    def slow_build(spec: object) -> RemoteBackend:
        assert release.wait(60), "the test never released the build"
        return spawn_dummy()

    monkeypatch.setattr(host_sway, "build", slow_build)
    backend = sway_build(_hf(tmp_path))  # returns although the build is blocked
    try:
        assert not backend._starting.done()
        # sway's protocol checks were answered from what a built-in hf worker serves
        assert list(backend.__sway_protocols__) == [
            "DifferentialBackend",
            "NullCalibratedBackend",
            "ScalableDifferentialBackend",
        ]
        release.set()
        with backend.as_finetuned() as view:  # the first call waits for the worker
            assert view.logprob_of("a b", " c") < 0
        assert backend.preflight_finite_check() == (True, "")
    finally:
        release.set()
        backend.close()


def test_closing_while_the_worker_starts_stops_it_once_started(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    started: list[RemoteBackend] = []

    def slow_build(spec: object) -> RemoteBackend:
        release.wait(60)
        started.append(spawn_dummy())
        return started[0]

    monkeypatch.setattr(host_sway, "build", slow_build)
    backend = sway_build(_hf(tmp_path))
    backend.close()  # sway failed before its first call: close does not wait for the start
    assert not backend._starting.done()
    release.set()
    wait_until(lambda: bool(started) and not psutil.pid_exists(started[0].pid), timeout=30)
    with pytest.raises(RuntimeError, match="closed while starting"):
        backend.cache_identity()


def test_a_worker_serving_less_than_its_kind_promised_says_how_to_fix_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(host_sway, "build", lambda spec: spawn_dummy(protocols="null"))
    backend = sway_build(_hf(tmp_path))
    try:
        assert isinstance(backend, ScalableDifferentialBackend)  # promised before it was up
        with pytest.raises(UnsupportedCapabilityError, match="background_start: false"):
            backend.as_scaled_adapter(0.5)
        with backend.as_null_adapter(3) as view:  # what it does serve still works
            assert view.logprob_of("a b", " c") < 0
    finally:
        backend.close()


def test_the_built_in_workers_serve_what_their_kind_promises() -> None:
    """The promise sway's checks see before the worker is up is each worker
    class's own (mlx: ``test_mlx_worker``, in its environment)."""
    from swayworker.api.backend import ApiBackend
    from swayworker.hf.backend import HFDifferentialBackend

    for kind, cls in (("hf", HFDifferentialBackend), ("api", ApiBackend)):
        served = tuple(n for n in host_sway.OPTIONAL_METHODS if callable(getattr(cls, n, None)))
        assert host_sway.BUILT_IN_METHODS[kind] == served, kind


def test_a_load_error_in_the_background_fails_sway_run_as_a_build_error(
    tiny_model: TinyModel, tmp_path: Path
) -> None:
    """Started in the background or not, a model that cannot load fails ``sway run``
    with the same exit code and the same error, and leaves no worker. (sway in
    process raises its own ``JSONDecodeError`` here: a traceback and exit 1 too.)"""
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{not json", encoding="utf-8")
    spec = sway_yaml(tiny_model, {"kind": "custom", "entry_point": ENTRY_POINT})
    spec["models"]["ft"]["adapter"] = str(adapter)
    outcomes = []
    for background in (True, False):
        marker = uuid.uuid4().hex
        config = tmp_path / f"swayhost-{background}.yaml"
        write_host_config(config, marker, background_start=background)
        env = {**_base_env(), CONFIG_ENV: str(config), MARKER_ENV: marker}
        run = run_sway(spec, tmp_path / f"run-{background}", env)
        assert run.survivors == set()
        outcomes.append((run.returncode, _raised(run.stderr)))
    assert outcomes[0] == outcomes[1]
    returncode, raised = outcomes[0]
    assert returncode == 1 and raised.startswith("ValueError: adapter config"), raised
    assert "is not valid JSON" in raised


def _raised(stderr: str) -> str:
    """The exception line under sway's (typer's) traceback box, unwrapped."""
    after_box = stderr.rsplit("╰", 1)[-1].split("\n", 1)[-1]
    return " ".join(after_box.split())


def test_sway_entry_points_stay_light() -> None:
    """Importing the entry-point module loads no ML framework (sway's loader imports it)."""
    program = (
        "import sys, swayhost.sway; "
        f"print(','.join(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == ""


# -- the host config file -------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_config_parses_a_worker_section(tmp_path: Path) -> None:
    config = write(
        tmp_path / "c.yaml",
        f"workers:\n  hf:\n    python: {sys.executable}\n"
        "    env: {HF_HOME: /data/hf, OMP_NUM_THREADS: 2}\n    startup_timeout: 30\n",
    )
    assert worker_options("hf", config) == WorkerOptions(
        python=sys.executable,
        env={"HF_HOME": "/data/hf", "OMP_NUM_THREADS": "2"},
        startup_timeout=30.0,
    )
    assert worker_options("mlx", config) == WorkerOptions()


def test_config_defaults_without_a_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert worker_options("hf") == WorkerOptions()
    default = tmp_path / "xdg-config" / "swayhost" / "config.yaml"
    default.parent.mkdir(parents=True)
    write(default, "workers:\n  hf:\n    startup_timeout: 5\n")
    assert worker_options("hf").startup_timeout == 5.0


def test_config_from_the_environment_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write(tmp_path / "c.yaml", "workers: {hf: {startup_timeout: 7}}\n")
    monkeypatch.setenv(CONFIG_ENV, str(config))
    assert worker_options("hf").startup_timeout == 7.0
    monkeypatch.setenv(CONFIG_ENV, str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match=r"missing\.yaml: \(file\): not found; create it"):
        worker_options("hf")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- hf\n", r"\(top level\): expected a mapping, got list; write e\.g\. workers:"),
        ("worker: {}\n", r"worker: unknown key; did you mean 'workers'\? allowed: workers"),
        ("workers: {hff: {}}\n", r"workers\.hff: unknown key; did you mean 'hf'\?"),
        ("workers: {hf: [1]}\n", r"workers\.hf: expected a mapping, got list"),
        (
            "workers: {hf: {pyhton: x}}\n",
            r"workers\.hf\.pyhton: unknown key; did you mean 'python'",
        ),
        (
            "workers: {hf: {python: /no/such/python}}\n",
            r"workers\.hf\.python: '/no/such/python' does not exist; point it at",
        ),
        ("workers: {hf: {python: 3}}\n", r"workers\.hf\.python: expected a path, got 3"),
        ("workers: {hf: {env: {A: [1]}}}\n", r"workers\.hf\.env\.A: expected a string.*quote"),
        ("workers: {hf: {startup_timeout: -1}}\n", r"startup_timeout: expected a positive number"),
        ("workers: {hf: {startup_timeout: yes}}\n", r"startup_timeout: expected a positive number"),
        ("workers: [\n", r"\(file\): is not valid YAML"),
    ],
)
def test_config_errors_name_file_key_and_fix(text: str, message: str, tmp_path: Path) -> None:
    config = write(tmp_path / "c.yaml", text)
    with pytest.raises(ConfigError, match=message) as caught:
        worker_options("hf", config)
    assert str(caught.value).startswith(f"{config}: ")


def test_config_python_must_be_executable(tmp_path: Path) -> None:
    script = write(tmp_path / "python", f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    config = write(tmp_path / "c.yaml", "workers: {hf: {python: ./python}}\n")
    with pytest.raises(ConfigError, match=r"python' is not an executable file"):
        worker_options("hf", config)
    script.chmod(0o755)
    assert worker_options("hf", config).python == str(script)


SLOW_START_SECONDS = 60
SLOW_PYTHON = f"""#!{sys.executable}
# The worker's interpreter, {SLOW_START_SECONDS} s late to start a module (the host's quick
# interpreter check, "-c", is answered at once): a start that is surely under way when the
# test interrupts. Like a worker, it stops itself when its host is gone.
import os, sys, time
host, deadline = os.getppid(), time.monotonic() + {SLOW_START_SECONDS}
while sys.argv[1] == "-m" and time.monotonic() < deadline:
    if os.getppid() != host:
        sys.exit(0)
    time.sleep(0.05)
os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
"""


def wait_until_idle(pid: int, quiet_s: float = 1.0, timeout: float = 60.0) -> None:
    """Until process ``pid`` has used no CPU for ``quiet_s``: it is blocked, waiting."""
    process = psutil.Process(pid)

    def cpu() -> float:
        times = process.cpu_times()
        return float(times.user + times.system)

    deadline = time.monotonic() + timeout
    last, quiet_since = cpu(), time.monotonic()
    while time.monotonic() - quiet_since < quiet_s:
        assert time.monotonic() < deadline, f"process {pid} never went idle"
        time.sleep(0.1)
        now = cpu()
        if now - last > 0.02:
            last, quiet_since = now, time.monotonic()


def test_ctrl_c_while_the_worker_starts_leaves_nothing(
    tiny_model: TinyModel, tmp_path: Path
) -> None:
    """The start runs on a daemon thread: ``sway run`` interrupted while it waits for
    the worker exits at once (130) without waiting for it, and the worker, its host
    gone, stops itself.

    The interrupt comes once sway has done its own work (imports, seeding) and sits
    idle in its first call, waiting for the start; if it ever hangs, the test aborts
    it and shows where each of its threads was (Python's faulthandler).
    """
    marker = uuid.uuid4().hex
    slow_python = tmp_path / "slow-python"
    slow_python.write_text(SLOW_PYTHON, encoding="utf-8")
    slow_python.chmod(0o755)
    config = tmp_path / "swayhost.yaml"
    hf = {"python": str(slow_python), "env": {MARKER_ENV: marker}}
    config.write_text(yaml.safe_dump({"workers": {"hf": hf}}), encoding="utf-8")
    spec_path = tmp_path / "sway.yaml"
    spec = sway_yaml(tiny_model, {"kind": "custom", "entry_point": ENTRY_POINT})
    spec_path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    env = {**_base_env(), CONFIG_ENV: str(config), MARKER_ENV: marker, "PYTHONFAULTHANDLER": "1"}
    stderr_path = tmp_path / "stderr.txt"
    with stderr_path.open("wb") as stderr:
        sway = subprocess.Popen(
            [str(SWAY), "run", str(spec_path)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as a terminal has it
        )
    try:
        wait_until(lambda: bool(workers_marked(marker)), timeout=60)  # the start is under way
        wait_until_idle(sway.pid)  # sway's first call waits for it
        assert sway.poll() is None, "sway run ended before the test could interrupt it"
        sway.send_signal(signal.SIGINT)
        try:
            # well before the worker could have started: nothing waited for it
            code = sway.wait(SLOW_START_SECONDS / 3)
        except subprocess.TimeoutExpired:
            sway.send_signal(signal.SIGABRT)  # faulthandler prints every thread's stack
            sway.wait(10)
            pytest.fail(f"sway run hung after Ctrl-C:\n{stderr_path.read_text()[-6000:]}")
        assert code == 130, stderr_path.read_text()[-3000:]
    finally:
        sway.kill()
    wait_until(lambda: not workers_marked(marker), timeout=10)
