"""Detached workers outlive their host; a later host reattaches; stale records stay harmless."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import swayhost
from swayhost import detached
from swayhost.errors import WorkerStartError
from swayworker.hf.checkpoints import build_checkpoints
from swayworker.hf.tiny import TinyModel

from tests.evaluation import differential_report, same_report
from tests.helpers import process_alive, spawn_dummy, wait_until


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A private state folder; any worker left recorded in it is stopped afterwards."""
    folder = tmp_path / "state"
    monkeypatch.setenv("SWAYHOST_STATE_DIR", str(folder))
    yield folder
    for record in detached.records():
        detached.stop(record.name)


def _spec(name: str = "warm", **options: str) -> swayhost.ModelSpec:
    worker = swayhost.WorkerOptions(detach=True, name=name, options=options)
    return swayhost.ModelSpec(kind="dummy", base="toy", worker=worker)


HOST = textwrap.dedent(
    """
    import json, sys, swayhost
    from tests.evaluation import differential_report
    worker = swayhost.WorkerOptions(detach=True, name="warm")
    backend = swayhost.spawn(swayhost.ModelSpec(kind="dummy", base="toy", worker=worker))
    print(json.dumps({"pid": backend.pid}), flush=True)
    differential_report(backend)
    sys.stdin.read()  # until the test kills this host
    """
)


def test_a_detached_worker_survives_its_host_and_is_reattached_by_name() -> None:
    host = subprocess.Popen(
        [sys.executable, "-c", HOST],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    assert host.stdout is not None
    pid = json.loads(host.stdout.readline())["pid"]
    host.kill()  # the host dies without closing anything: no atexit, no Shutdown
    host.wait(10)

    assert process_alive(pid), "a detached worker must outlive its host"
    (record,) = detached.records()
    assert (record.name, record.pid, record.state()) == ("warm", pid, "running")
    assert Path(record.log).is_file()
    with swayhost.reattach("warm") as backend:
        assert backend.pid == pid
        got = differential_report(backend)
    with spawn_dummy() as local:
        assert same_report(got, differential_report(local))
    assert process_alive(pid), "closing a reattached backend leaves the worker running"

    assert detached.stop("warm") == f"warm: stopped pid {pid} (Shutdown)"
    wait_until(lambda: not process_alive(pid))
    assert detached.records() == []


def test_spawning_the_same_spec_again_attaches_instead_of_starting_another() -> None:
    with swayhost.spawn(_spec()) as first:
        pid = first.pid
    assert process_alive(pid), "closing the backend of a detached worker leaves it running"
    with swayhost.spawn(_spec()) as second:
        assert second.pid == pid
    with pytest.raises(WorkerStartError, match="already serves another model"):
        swayhost.spawn(_spec(sleep_ms="1"))


def test_a_dead_workers_record_is_stale_and_never_signalled() -> None:
    with swayhost.spawn(_spec()) as backend:
        pid = backend.pid
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not process_alive(pid))
    (record,) = detached.records()
    assert record.state() == "gone"
    with pytest.raises(WorkerStartError, match="no detached worker named 'warm' is running"):
        swayhost.reattach("warm")
    # spawning the same spec replaces the stale record with a new worker
    with swayhost.spawn(_spec()) as again:
        assert again.pid != pid
    assert detached.stop("warm").startswith("warm: stopped pid")


def test_a_reused_pid_is_recognised_and_left_alone() -> None:
    with swayhost.spawn(_spec()):
        record = detached.load("warm")
    assert record is not None
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        # The record's pid now names another process, whose start time differs.
        forged = dataclasses.replace(record, pid=bystander.pid)
        detached.save(forged)
        assert forged.state() == "pid reused"
        assert not detached.signal_verified(forged, signal.SIGKILL)
        assert "nothing signalled" in detached.stop("warm")
        assert bystander.poll() is None, "the process that reused the pid was signalled"
    finally:
        bystander.kill()
        bystander.wait(10)
        detached.save(record)  # the real worker, still running, for the fixture to stop


def test_cli_lists_and_stops_detached_workers() -> None:
    with swayhost.spawn(_spec()) as backend:
        pid = backend.pid
    listed = subprocess.run(
        [sys.executable, "-m", "swayhost", "detached", "list", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    (row,) = json.loads(listed.stdout)
    assert (row["name"], row["state"], row["pid"], row["kind"]) == ("warm", "running", pid, "dummy")
    stopped = subprocess.run(
        [sys.executable, "-m", "swayhost", "detached", "stop", "--all"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert f"warm: stopped pid {pid}" in stopped.stdout
    wait_until(lambda: not process_alive(pid))


def _hf_spec(tiny: TinyModel, adapter: Path, **changes: str) -> swayhost.ModelSpec:
    worker = swayhost.WorkerOptions(detach=True, name="warm-hf")
    fields = {"base": str(tiny.base_dir), "dtype": "fp32", "device": "cpu", **changes}
    return swayhost.ModelSpec(kind="hf", adapter=adapter, worker=worker, **fields)


@pytest.mark.slow
def test_another_adapter_of_its_base_is_loaded_into_the_warm_worker(
    tiny_model: TinyModel, tmp_path: Path
) -> None:
    (half,) = build_checkpoints(tiny_model.adapter_dir, tmp_path, [50, 100])[:1]
    with swayhost.spawn(_hf_spec(tiny_model, tiny_model.adapter_dir)) as first:
        pid = first.pid
        differential_report(first)
    with swayhost.spawn(_hf_spec(tiny_model, half)) as second:
        assert second.pid == pid, "the warm worker serves the other adapter"
        assert second.description.loaded_spec.adapter == str(half)
        got = differential_report(second)
    fresh = dataclasses.replace(_hf_spec(tiny_model, half), worker=swayhost.WorkerOptions())
    with swayhost.build(fresh) as local:
        assert same_report(got, differential_report(local)), "swapped in equals a fresh worker"
    record = detached.load("warm-hf")
    assert record is not None and record.served().adapter == str(half)
    with swayhost.reattach("warm-hf") as again:
        assert again.pid == pid
        assert same_report(differential_report(again), got)


@pytest.mark.slow
@pytest.mark.parametrize(
    "changes", [{"base": "/elsewhere/another-base"}, {"dtype": "bf16"}, {"device": "cuda"}]
)
def test_another_base_is_still_refused(tiny_model: TinyModel, changes: dict[str, str]) -> None:
    with swayhost.spawn(_hf_spec(tiny_model, tiny_model.adapter_dir)) as first:
        pid = first.pid
    with pytest.raises(WorkerStartError, match="already serves another model"):
        swayhost.spawn(_hf_spec(tiny_model, tiny_model.adapter_dir, **changes))
    record = detached.load("warm-hf")
    assert record is not None and record.pid == pid
    assert record.served().adapter == str(tiny_model.adapter_dir), "the refusal changed nothing"
