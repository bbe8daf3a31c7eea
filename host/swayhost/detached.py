"""Detached workers: started to outlive their host, found again by name.

A notebook that restarts its kernel loses every worker it spawned, and with
them minutes of model loading. A worker spawned with
``WorkerOptions(detach=True, name=...)`` survives its host (no stdin or
parent-death watch, stderr to a log file) and is recorded in the state
folder, ``<state>/detached/NAME.json`` (0600, folder 0700). The next
``spawn`` of the same spec under that name, or ``reattach(name)``, connects
to it instead of starting another; closing the backend leaves it running and
``stop(name)`` (``swayhost detached stop NAME``) ends it. A spec that names
another adapter of the base the worker holds (same kind, base, dtype,
device and options) Loads that adapter into it; another base is refused.

A record is trusted only as far as the kernel confirms it: its pid must be
running with the start time recorded (field 22 of ``/proc/PID/stat``, clock
ticks since boot). A record that fails this is stale, its worker gone or
its pid now another process's; a stale record is reported and removed, and
its pid is never signalled. Signals go through a pidfd opened *before* the
start time is checked, so a pid reused in between cannot be hit either.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import logging
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

import grpc
from google.protobuf import json_format
from swayplugin.v1 import backend_pb2 as pb
from swayplugin.v1 import backend_pb2_grpc as pb_grpc
from swayworker.protocol import CORE_PROTOCOL_VERSION, PROTOCOL_VERSION, Handshake

from swayhost.errors import WorkerStartError
from swayhost.launch import launch
from swayhost.local import worker_process
from swayhost.paths import state_dir, writable
from swayhost.process import WorkerProcess, excerpt, log_tail, remove_socket_folder
from swayhost.proxy import RemoteBackend
from swayhost.spec import ModelSpec, WorkerOptions, base_key

log = logging.getLogger("swayhost")

State = Literal["running", "gone", "pid reused"]
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_POLL_S = 0.05


@dataclass(frozen=True)
class DetachedRecord:
    """What a host remembers about a detached worker it started."""

    name: str
    pid: int
    start_ticks: int
    """The process's start time (clock ticks since boot): with the pid, its identity."""
    address: str
    spec: dict[str, Any]
    """The ``ModelSpec`` it serves, as protobuf JSON."""
    log: str
    started_at: float

    def state(self) -> State:
        ticks = process_start_ticks(self.pid)
        if ticks is None:
            return "gone"
        return "running" if ticks == self.start_ticks else "pid reused"

    def served(self) -> pb.ModelSpec:
        return json_format.ParseDict(self.spec, pb.ModelSpec())


def process_start_ticks(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot), or None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    state, start = fields[0], fields[19]  # fields 3 and 22 of proc(5)
    return None if state in ("Z", "X") else int(start)


def check_name(name: str) -> str:
    """``name`` if it can name a record file; a ValueError saying what is allowed otherwise."""
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"{name!r} cannot name a detached worker: use letters, digits, '.', '_' and '-' "
            "(at most 64, starting with a letter or digit)"
        )
    return name


def records_dir(*, create: bool = False) -> Path:
    """The records' folder (0700), made only when something is to be written there."""
    folder = state_dir() / "detached"
    if create:
        writable(folder, mode=0o700)
    return folder


def load(name: str) -> DetachedRecord | None:
    try:
        data = json.loads((records_dir() / f"{check_name(name)}.json").read_text())
    except FileNotFoundError:
        return None
    return DetachedRecord(**data)


def records() -> list[DetachedRecord]:
    """Every record, by name."""
    return [r for p in sorted(records_dir().glob("*.json")) if (r := load(p.stem)) is not None]


def save(record: DetachedRecord) -> None:
    """Write the record atomically (a reader never sees half of one), 0600."""
    folder = records_dir(create=True)
    temporary = folder / f".{record.name}.json.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(asdict(record), handle, indent=2)
    temporary.replace(folder / f"{record.name}.json")


def forget(record: DetachedRecord) -> None:
    """Remove a record of a worker that no longer runs, and the socket folder it left."""
    (records_dir() / f"{record.name}.json").unlink(missing_ok=True)
    remove_socket_folder(record.address)


@contextlib.contextmanager
def _locked(name: str) -> Iterator[None]:
    """Hold the name's lock, so two hosts never both start a worker under one name."""
    with (records_dir(create=True) / f"{name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@dataclass(frozen=True)
class DetachedLauncher:
    """Workers that outlive this host, found by name (and started first when a spec is given)."""

    name: str
    startup_timeout: float = 120.0
    spec: ModelSpec | None = None
    """The spec to start a worker for when none runs; None only finds one."""

    @classmethod
    def for_spec(cls, spec: ModelSpec) -> DetachedLauncher:
        options = spec.worker
        return cls(options.name or spec.kind, options.startup_timeout, spec)

    def endpoint(self) -> DetachedEndpoint:
        if self.spec is None:
            return DetachedEndpoint(self.name, startup_timeout=self.startup_timeout)
        return DetachedEndpoint(
            self.name,
            startup_timeout=self.startup_timeout,
            serves=self.spec.to_proto(),
            spawn=functools.partial(worker_process, self.spec),
        )


class DetachedEndpoint:
    """A detached worker found by name, started first when ``spawn`` is given and none runs.

    Not an ``OwnedEndpoint``: closing the connection leaves it running;
    ending it is ``stop(name)``'s job.
    """

    def __init__(
        self,
        name: str,
        *,
        startup_timeout: float = 120.0,
        serves: pb.ModelSpec | None = None,
        spawn: Callable[[Path], WorkerProcess] | None = None,
    ) -> None:
        if not Path("/proc/self/stat").exists():
            raise WorkerStartError(
                "detached workers need Linux: a record's pid is trusted only once /proc "
                "confirms its start time"
            )
        self.name = check_name(name)
        self.startup_timeout = startup_timeout
        self.handshake: Handshake | None = None
        self.record: DetachedRecord | None = None
        self._serves = serves
        self._spawn = spawn
        self._process: WorkerProcess | None = None
        """Set when this endpoint started the worker: it can then reap it and read its exit code."""

    @property
    def pid(self) -> int:
        return self.record.pid if self.record is not None else -1

    def start(self) -> Handshake:
        with _locked(self.name):
            record = load(self.name)
            if record is not None and record.state() == "running":
                record = self._check_serves(record)
            else:
                if record is not None:
                    log.info(
                        "detached worker %s: its record is stale (pid %d %s); removed, not "
                        "signalled",
                        self.name,
                        record.pid,
                        record.state(),
                    )
                    forget(record)
                record = self._start_new()
        self.record = record
        self.handshake = Handshake(CORE_PROTOCOL_VERSION, PROTOCOL_VERSION, "unix", record.address)
        return self.handshake

    def _check_serves(self, record: DetachedRecord) -> DetachedRecord:
        """The record, naming the adapter asked for when only the adapter differs.

        Another adapter of the base the worker holds is served by Loading it
        there (the supervisor's Load after ``start``), which is the point of
        a warm worker; another base would throw away what it holds and is
        refused.
        """
        served = record.served()
        if self._serves is None or served == self._serves:
            return record
        if base_key(served) != base_key(self._serves):
            raise WorkerStartError(
                f"a detached worker named {self.name!r} (pid {record.pid}) already serves "
                f"another model ({served.kind} {served.base} {served.adapter}); stop it "
                f"(`swayhost detached stop {self.name}`) or pick another name"
            )
        log.info(
            "detached worker %s: loading adapter %s on its base %s (was %s)",
            self.name,
            self._serves.adapter,
            served.base,
            served.adapter,
        )
        record = replace(record, spec=json_format.MessageToDict(self._serves))
        save(record)
        return record

    def _start_new(self) -> DetachedRecord:
        if self._spawn is None or self._serves is None:
            raise WorkerStartError(
                f"no detached worker named {self.name!r} is running; start one with "
                f"swayhost.spawn(spec) and WorkerOptions(detach=True, name={self.name!r})"
            )
        process = self._spawn(records_dir() / f"{self.name}.log")
        handshake = process.start()
        ticks = process_start_ticks(process.pid)
        if ticks is None:
            raise WorkerStartError(
                f"detached worker {self.name!r} exited right after its handshake."
                f"{process.stderr_excerpt()}"
            )
        record = DetachedRecord(
            name=self.name,
            pid=process.pid,
            start_ticks=ticks,
            address=handshake.address,
            spec=json_format.MessageToDict(self._serves),
            log=str(process.log_path),
            started_at=time.time(),
        )
        save(record)
        self._process = process
        log.info("detached worker %s started as pid %d", self.name, process.pid)
        return record

    def open_channel(self, options: list[tuple[str, Any]]) -> grpc.Channel:
        """A plaintext channel to its private Unix socket, as for a child worker."""
        assert self.handshake is not None, "start() first"
        return grpc.insecure_channel(self.handshake.grpc_target, options=options)

    def alive(self) -> bool:
        if self._process is not None:
            self._process.poll()  # reap our own child, or it would linger as a zombie
        return self.record is not None and self.record.state() == "running"

    def wait(self, timeout: float) -> bool:
        if self._process is not None:
            return self._process.wait(timeout)  # our own child: its exit is reaped too
        return self.record is None or _ended(self.record, timeout)

    def reap(self, timeout: float) -> int | None:
        self.wait(timeout)
        return self._process.poll() if self._process is not None else None

    def kill(self) -> None:
        """SIGKILL a worker found hung, if the record still names it."""
        if self.record is not None:
            signal_verified(self.record, signal.SIGKILL)

    def describe_exit(self) -> str:
        if self._process is not None:
            return self._process.describe_exit()
        return "an exit this host did not see (the worker is not its child)"

    def stderr_tail(self, lines: int = 20) -> list[str]:
        return log_tail(Path(self.record.log), lines) if self.record is not None else []

    def stderr_excerpt(self, lines: int = 20) -> str:
        return excerpt(self.stderr_tail(lines))


def reattach(name: str, *, worker: WorkerOptions | None = None) -> RemoteBackend:
    """The backend of the detached worker named ``name``, which must be running.

    ``worker`` gives the recovery policy and journal; the spec is the one
    the worker was started with. If the worker dies, the supervisor finds no
    worker to reconnect to and gives up: spawn it again with its spec.
    """
    record = load(name)
    if record is None:
        raise WorkerStartError(f"no detached worker is recorded under {name!r}")
    options = replace(worker or WorkerOptions(), name=name)
    spec = ModelSpec.from_proto(record.served(), options)
    return launch(spec, DetachedLauncher(name, options.startup_timeout))


def stop(name: str, *, grace: float = 5.0) -> str:
    """End the detached worker ``name`` and drop its record; what happened, in words.

    Shutdown over its socket first, then SIGTERM, then SIGKILL, each signal
    only to the process the record names. A stale record is just removed.
    """
    record = load(name)
    if record is None:
        return f"{name}: no such detached worker"
    state = record.state()
    if state != "running":
        forget(record)
        return f"{name}: stale record (pid {record.pid} {state}); removed, nothing signalled"
    steps: list[tuple[str, Callable[[], bool]]] = [
        ("Shutdown", lambda: _request_shutdown(record)),
        ("SIGTERM", lambda: signal_verified(record, signal.SIGTERM)),
        ("SIGKILL", lambda: signal_verified(record, signal.SIGKILL)),
    ]
    for how, deliver in steps:
        if (deliver() and _ended(record, grace)) or record.state() != "running":
            forget(record)
            return f"{name}: stopped pid {record.pid} ({how})"
    return f"{name}: pid {record.pid} is still running after SIGKILL; its record is kept"


def signal_verified(record: DetachedRecord, signum: signal.Signals) -> bool:
    """Send ``signum`` to the record's process only if it is still that process."""
    try:
        pidfd = os.pidfd_open(record.pid)
    except ProcessLookupError:
        return False
    try:
        if process_start_ticks(record.pid) != record.start_ticks:
            log.warning(
                "detached worker %s: pid %d is no longer it; not signalled", record.name, record.pid
            )
            return False
        signal.pidfd_send_signal(pidfd, signum)
        return True
    finally:
        os.close(pidfd)


def _request_shutdown(record: DetachedRecord) -> bool:
    """Ask the worker to exit over its own socket; False if it could not be asked."""
    with grpc.insecure_channel(f"unix:{record.address}") as channel:
        try:
            pb_grpc.DifferentialBackendStub(channel).Shutdown(pb.ShutdownRequest(), timeout=2.0)
        except grpc.RpcError as exc:
            log.info("detached worker %s: Shutdown failed (%s); signalling", record.name, exc)
            return False
    return True


def _ended(record: DetachedRecord, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while record.state() == "running":
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_S)
    return True
