"""Mistakes that once left worker processes running, and what the user is told now.

Each test makes the mistake with real processes (a real host in a
subprocess where the host must die, real workers, real shells), asserts the
exact message, and asserts that no process is left: every process a test
starts carries a tag in its environment, inherited by its children, and
``leftovers`` finds them by it.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import swayhost
from swayhost import ModelSpec, RecoveryPolicy, WorkerOptions
from swayhost.errors import WorkerInternalError, WorkerStartError
from swayhost.process import group_alive
from swayworker.protocol import CORE_PROTOCOL_VERSION, PROTOCOL_VERSION

TAG = "SWAY_TEST_PROCESS_TAG"

STUCK_IMPORT = """
import os, pathlib, time
pathlib.Path(os.environ["STUCK_MARK"]).write_text("import")
time.sleep(120)
"""

SLOW_CALLS = """
import os, pathlib, time
from contextlib import contextmanager


class _View:
    def logprob_of(self, prompt, completion):
        pathlib.Path(os.environ["STUCK_MARK"]).write_text("call")
        time.sleep(120)
        return 0.0


class SlowCalls:
    def __init__(self, *, base_spec, adapter_path):
        pass

    @contextmanager
    def as_base(self):
        yield _View()

    @contextmanager
    def as_finetuned(self):
        yield _View()
"""

HOST = """
import json, os, sys, time
import swayhost
from swayhost import ModelSpec, RecoveryPolicy, WorkerOptions

phase, launcher = sys.argv[1:]
env = {}
entry = "slow_calls:SlowCalls"
if phase == "load":
    entry = "stuck_import:Blocks"
if phase == "handshake":  # a service that loads its model before it announces itself
    spec = {"kind": "custom", "base": "toy", "entryPoint": "stuck_import:Blocks"}
    env["SWAY_WORKER_LOAD"] = json.dumps(spec)
recovery = RecoveryPolicy(fork_template=launcher == "template")
options = WorkerOptions(env=env, recovery=recovery)
backend = swayhost.build(ModelSpec(kind="custom", base="toy", entry_point=entry, worker=options))
print("ready", flush=True)
if phase == "call":
    with backend.as_base() as view:
        view.logprob_of("p", "c")
time.sleep(120)
"""

NO_MAIN_GUARD = """
import swayhost
from swayhost import ModelSpec


class MyBackend:
    def __init__(self, *, base_spec, adapter_path):
        pass


backend = swayhost.build(ModelSpec(kind="custom", base="toy", entry_point="mybackend:MyBackend"))
with backend.as_base() as view:
    print(view.logprob_of("The sky is", " blue"))
"""


@pytest.fixture
def tag(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A tag every process started from here inherits; what is left is killed afterwards."""
    value = uuid.uuid4().hex
    monkeypatch.setenv(TAG, value)
    yield value
    for proc in leftovers(value):
        proc.kill()


def leftovers(tag: str) -> list[psutil.Process]:
    """Live processes (zombies are dead) carrying ``tag``, other than this one."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.pid == os.getpid() or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if proc.environ().get(TAG) == tag:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def assert_none_left(tag: str, within: float) -> None:
    deadline = time.monotonic() + within
    while (left := leftovers(tag)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not left, "processes left running: " + "; ".join(
        " ".join(p.cmdline()) for p in left if p.is_running()
    )


def refusal(script: Path) -> str:
    """The pattern of the message a script with no ``__main__`` guard gets (any worker pid)."""
    message = (
        "swayhost.build/spawn was called inside a sway worker process (custom worker (pid "
        f"PID), importing the entry_point 'mybackend:MyBackend' ({script})), and a worker "
        "never starts workers: each would start another. The module a custom backend's "
        "entry_point names is imported by its worker, so it must not build a backend when "
        "imported: put the script's driver code (the swayhost.build call and what uses it) "
        'under `if __name__ == "__main__":`.'
    )
    return re.escape(message).replace("PID", r"\d+")


def pythonpath(*folders: Path) -> str:
    return os.pathsep.join([*map(str, folders), os.environ.get("PYTHONPATH", "")])


# -- a chain of workers ------------------------------------------------------


@pytest.mark.parametrize("template", [False, True], ids=["spawned", "template"])
def test_a_backend_script_without_a_main_guard_is_refused_in_its_worker(
    tag: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, template: bool
) -> None:
    """The worker imports the script to find the class; the script's build must not chain."""
    script = tmp_path / "mybackend.py"
    script.write_text(NO_MAIN_GUARD)
    monkeypatch.setenv("PYTHONPATH", pythonpath(tmp_path))
    options = WorkerOptions(recovery=RecoveryPolicy(fork_template=template))
    spec = ModelSpec(kind="custom", base="toy", entry_point="mybackend:MyBackend", worker=options)
    started = time.monotonic()
    with pytest.raises(WorkerStartError) as info:
        swayhost.build(spec)
    assert not isinstance(info.value, WorkerInternalError)
    assert time.monotonic() - started < 30
    assert re.fullmatch(refusal(script), str(info.value)), str(info.value)
    assert_none_left(tag, within=5.0)


def test_the_same_script_run_by_the_user_fails_once_and_leaves_nothing(
    tag: str, tmp_path: Path
) -> None:
    """Run as a user runs it: one clear error, exit code 1, no chain, nothing left."""
    script = tmp_path / "mybackend.py"
    script.write_text(NO_MAIN_GUARD)
    env = dict(os.environ, PYTHONPATH=pythonpath(tmp_path))
    run = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 1
    lines = run.stderr.splitlines()
    assert lines[-2:] == [lines[-2], "raised in worker 'custom'"]
    assert re.fullmatch("swayhost.errors.WorkerStartError: " + refusal(script), lines[-2])
    assert_none_left(tag, within=5.0)


def test_a_worker_process_refuses_to_start_a_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every entry that starts a worker checks the mark, not only the custom loader."""
    monkeypatch.setenv("SWAY_WORKER_PROCESS", "hf worker (pid 7)")
    with pytest.raises(WorkerStartError) as info:
        swayhost.spawn(ModelSpec(kind="dummy", base="toy"))
    assert str(info.value).startswith(
        "swayhost.build/spawn was called inside a sway worker process (hf worker (pid 7)), "
        "and a worker never starts workers"
    )


# -- orphans in every phase --------------------------------------------------


PHASES = ["handshake", "load", "call", "idle"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("launcher", "how"),
    [("spawned", signal.SIGKILL), ("spawned", signal.SIGTERM), ("template", signal.SIGKILL)],
    ids=["spawned-SIGKILL", "spawned-SIGTERM", "template-SIGKILL"],
)
@pytest.mark.parametrize("phase", PHASES)
def test_workers_die_with_their_host_in_every_phase(
    tag: str, tmp_path: Path, phase: str, launcher: str, how: signal.Signals
) -> None:
    """The host dies while its worker is before its handshake, in Load, in a call, or idle.

    ``template``: the worker is forked by a worker template, whose death
    (it watches the host) must take the worker with it.
    """
    (tmp_path / "stuck_import.py").write_text(STUCK_IMPORT)
    (tmp_path / "slow_calls.py").write_text(SLOW_CALLS)
    (tmp_path / "host.py").write_text(HOST)
    mark = tmp_path / "mark"
    env = dict(os.environ, PYTHONPATH=pythonpath(tmp_path), STUCK_MARK=str(mark))
    host = subprocess.Popen(
        [sys.executable, str(tmp_path / "host.py"), phase, launcher],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        if phase == "idle":
            assert host.stdout is not None
            assert host.stdout.readline() == "ready\n"
        else:
            deadline = time.monotonic() + 30
            while not mark.exists():
                assert host.poll() is None, "the host exited before the worker got stuck"
                assert time.monotonic() < deadline, f"the worker never reached {phase}"
                time.sleep(0.05)
        workers = [" ".join(p.cmdline()) for p in leftovers(tag) if p.pid != host.pid]
        assert any("swayworker.custom" in cmd for cmd in workers), workers
        assert any("swayworker.template" in cmd for cmd in workers) == (launcher == "template")
        host.send_signal(how)
        host.wait(5)
        assert_none_left(tag, within=8.0)
    finally:
        host.kill()
        host.wait(5)


# -- wrapper commands --------------------------------------------------------


def test_a_wrapper_shell_with_a_bad_handshake_fails_fast_and_leaves_no_child(tag: str) -> None:
    options = WorkerOptions(command=("sh", "-c", "echo garbage; sleep 40"))
    started = time.monotonic()
    with pytest.raises(WorkerStartError) as info:
        swayhost.spawn(ModelSpec(kind="dummy", base="toy", worker=options))
    assert time.monotonic() - started < 10
    assert str(info.value) == (
        "worker 'dummy' printed an invalid handshake line: expected "
        "'CORE|PROTOCOL|NETWORK|ADDRESS|grpc' (5 fields, and optionally a 6th, 'frames:PATH'), "
        "got 'garbage'. A worker must print 'CORE|PROTOCOL|unix|ADDRESS|grpc' as its first "
        "stdout line (see docs/writing-a-worker.md)."
    )
    assert_none_left(tag, within=1.0)


def test_closing_a_worker_behind_a_wrapper_shell_stops_the_shell_too(
    tag: str, caplog: pytest.LogCaptureFixture
) -> None:
    """``sh -c 'worker; sleep'``: the worker exits on Shutdown, the shell's sleep is stopped.

    The shell does not exit after Shutdown (its sleep runs on), so the host
    sends the group SIGTERM, which ends it: no SIGKILL is needed, even where
    the killed sleep stays a zombie (a container's init may never reap it).
    """
    command = f"{sys.executable} -m swayworker.dummy; sleep 40"
    options = WorkerOptions(command=("sh", "-c", command))
    backend = swayhost.spawn(ModelSpec(kind="dummy", base="toy", worker=options))
    with backend.as_base() as view:
        view.logprob_of("a b", " c")
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, "swayhost"):
        backend.close()
    assert time.monotonic() - started < 10
    assert not [r for r in caplog.records if "ignored SIGTERM" in r.getMessage()]
    assert_none_left(tag, within=1.0)


# -- silent waits ------------------------------------------------------------


@pytest.mark.slow
def test_a_silent_worker_is_named_within_seconds_and_the_wait_goes_on(
    tag: str, caplog: pytest.LogCaptureFixture
) -> None:
    options = WorkerOptions(command=("sleep", "40"), startup_timeout=7.0)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, "swayhost"), pytest.raises(WorkerStartError) as info:
        swayhost.spawn(ModelSpec(kind="dummy", base="toy", worker=options))
    assert time.monotonic() - started >= 7.0, "the wait did not go on after the notice"
    assert str(info.value) == (
        "worker 'dummy' printed no handshake within 7s (sleep 40). Raise startup_timeout if "
        "the worker is just slow to import, or check that it calls serve()."
    )
    notices = [r for r in caplog.records if "has printed no handshake" in r.getMessage()]
    assert len(notices) == 1
    assert re.fullmatch(
        r"worker dummy \(pid \d+\) has printed no handshake after 5s; still waiting up to 7s "
        r"for its first stdout line \(sleep 40\)",
        notices[0].getMessage(),
    )
    assert notices[0].levelno == logging.WARNING
    assert notices[0].created - caplog.records[0].created < 7.0
    assert_none_left(tag, within=1.0)


def test_a_handshake_naming_a_missing_socket_fails_at_once_with_the_reason(tag: str) -> None:
    line = f"{CORE_PROTOCOL_VERSION}|{PROTOCOL_VERSION}|unix|/nonexistent/sock|grpc"
    options = WorkerOptions(command=("sh", "-c", f"echo '{line}'; sleep 40"))
    started = time.monotonic()
    with pytest.raises(WorkerStartError) as info:
        swayhost.spawn(ModelSpec(kind="dummy", base="toy", worker=options))
    assert time.monotonic() - started < 10
    assert str(info.value) == (
        "worker 'dummy' named the socket /nonexistent/sock in its handshake, but it cannot be "
        "reached: No such file or directory. A worker must print its handshake only once its "
        "server listens on that socket (see docs/writing-a-worker.md)."
    )
    assert_none_left(tag, within=1.0)


def test_a_socket_nobody_answers_on_gives_a_reason(tag: str, tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as bound:  # bound, never listening
        bound.bind(str(path))
        line = f"{CORE_PROTOCOL_VERSION}|{PROTOCOL_VERSION}|unix|{path}|grpc"
        options = WorkerOptions(command=("sh", "-c", f"echo '{line}'; sleep 40"), startup_timeout=2)
        with pytest.raises(WorkerStartError) as info:
            swayhost.spawn(ModelSpec(kind="dummy", base="toy", worker=options))
    assert re.fullmatch(
        rf"worker 'dummy' printed a handshake but did not answer on {re.escape(str(path))}: "
        r"no connection within [0-9.]+s",
        str(info.value),
    ), str(info.value)
    assert_none_left(tag, within=1.0)


def test_megabytes_of_stdout_without_a_newline_are_reported_at_once(tag: str) -> None:
    code = "import sys, time; sys.stdout.write('x' * 10**7); sys.stdout.flush(); time.sleep(40)"
    options = WorkerOptions(command=(sys.executable, "-c", code))
    started = time.monotonic()
    with pytest.raises(WorkerStartError) as info:
        swayhost.spawn(ModelSpec(kind="dummy", base="toy", worker=options))
    assert time.monotonic() - started < 10
    assert str(info.value) == (
        "worker 'dummy' printed non-handshake output on stdout (more than 4096 bytes with no "
        f"newline), starting {'x' * 200!r}.... A worker must print "
        "'CORE|PROTOCOL|unix|ADDRESS|grpc' as its first stdout line and log to stderr "
        "(see docs/writing-a-worker.md)."
    )
    assert_none_left(tag, within=1.0)


def test_a_zombie_left_in_a_workers_group_does_not_count_as_running() -> None:
    """A killed wrapper's child is a zombie until init reaps it, which may be never.

    Counting it as running made every stop of a wrapped worker wait out its
    grace and report that the worker ignored SIGTERM.
    """
    child = subprocess.Popen(["true"], start_new_session=True)  # its own group, not reaped
    try:
        wait_until_zombie(child.pid)
        os.killpg(child.pid, 0)  # signal 0 still finds the group...
        assert not group_alive(child.pid)  # ... which has no live process
    finally:
        child.wait()
    sleeper = subprocess.Popen(["sleep", "40"], start_new_session=True)
    try:
        assert group_alive(sleeper.pid)
    finally:
        sleeper.kill()
        sleeper.wait()


def wait_until_zombie(pid: int) -> None:
    deadline = time.monotonic() + 5
    while psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline
        time.sleep(0.01)


@pytest.mark.slow
def test_a_load_that_hangs_is_named_within_seconds_then_fails_with_the_reason(
    tag: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """An entry point whose import never returns (in life: a hung download or import)."""
    (tmp_path / "stuck_import.py").write_text(STUCK_IMPORT)
    monkeypatch.setenv("PYTHONPATH", pythonpath(tmp_path))
    monkeypatch.setenv("STUCK_MARK", str(tmp_path / "mark"))
    options = WorkerOptions(startup_timeout=7.0)
    spec = ModelSpec(kind="custom", base="toy", entry_point="stuck_import:Blocks", worker=options)
    with caplog.at_level(logging.WARNING, "swayhost"), pytest.raises(WorkerStartError) as info:
        swayhost.build(spec)
    assert re.match(
        r"worker 'custom' \(pid \d+\) did not finish loading custom model 'toy' \(entry_point "
        r"'stuck_import:Blocks'\) within 7s\. Raise startup_timeout if the model is just slow "
        r"to load; otherwise the load hangs \(a download, an import\)\.",
        str(info.value),
    ), str(info.value)
    notices = [r.getMessage() for r in caplog.records if "is still loading" in r.getMessage()]
    assert len(notices) == 1
    assert re.fullmatch(
        r"worker custom \(pid \d+\) is still loading custom model 'toy' \(entry_point "
        r"'stuck_import:Blocks'\) after 5s; waiting up to 7s",
        notices[0],
    )
    assert_none_left(tag, within=5.0)


@pytest.mark.slow
def test_a_worker_stuck_in_load_still_ends_on_sigterm(tag: str, tmp_path: Path) -> None:
    """``kill PID`` by a user: the clean stop waits for the Load, so the worker exits anyway."""
    (tmp_path / "stuck_import.py").write_text(STUCK_IMPORT)
    (tmp_path / "host.py").write_text(HOST)
    mark = tmp_path / "mark"
    env = dict(os.environ, PYTHONPATH=pythonpath(tmp_path), STUCK_MARK=str(mark))
    host = subprocess.Popen([sys.executable, str(tmp_path / "host.py"), "load", "spawned"], env=env)
    try:
        deadline = time.monotonic() + 30
        while not mark.exists():
            assert time.monotonic() < deadline, "the worker never reached its Load"
            time.sleep(0.05)
        (worker,) = [p for p in leftovers(tag) if "swayworker.custom" in " ".join(p.cmdline())]
        worker.send_signal(signal.SIGTERM)
        started = time.monotonic()
        wait_until_gone(worker, within=5.0)
        assert time.monotonic() - started >= 1.5, "it should have tried a clean stop first"
    finally:
        host.kill()
        host.wait(5)
    assert_none_left(tag, within=5.0)


def wait_until_gone(proc: psutil.Process, within: float) -> None:
    deadline = time.monotonic() + within
    while True:
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        assert time.monotonic() < deadline, f"pid {proc.pid} still running after {within:g}s"
        time.sleep(0.05)
