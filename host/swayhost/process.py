"""Spawning a worker process and reading its handshake.

The host owns the worker's stdin (never written, closed only by the host's
death or ``stop()``, which is how the worker notices an orphaning), reads
exactly one handshake line from stdout within a start-up timeout, and
forwards stderr line by line into ``logging`` under the worker's name while
keeping the last lines for error messages.

A *detached* worker (``log_path`` given) is started to outlive this host:
its stdin is /dev/null, it is told so (``SWAY_WORKER_DETACHED=1``) and not
told the host's pid, and its stderr goes to the log file, since nobody may be
left to read a pipe.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import queue
import shlex
import shutil
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, NoReturn, Protocol

import grpc
from swayworker.protocol import (
    DETACHED_ENV,
    FRAMES_ENV,
    FRAMES_PREFIX,
    HOST_PID_ENV,
    MAGIC_COOKIE_KEY,
    MAGIC_COOKIE_VALUE,
    Handshake,
    HandshakeError,
    parse_handshake,
)

from swayhost.errors import WorkerStartError
from swayhost.nesting import refuse_inside_worker

log = logging.getLogger("swayhost")

STDERR_TAIL_LINES = 200
HANDSHAKE_MAX_BYTES = 4096
"""The longest first stdout line read as a handshake (a real one is ~100 bytes)."""
STDOUT_LINE_MAX_BYTES = 64 * 1024
"""Later stdout is forwarded in pieces of at most this, newline or not."""
SHOWN_OUTPUT_CHARS = 200
"""How much of a worker's stray stdout an error message quotes."""
WAIT_NOTICE_S = 5.0
"""After this long without a handshake the host says what it is waiting for..."""
WAIT_NOTICE_EVERY_S = 30.0
"""... and then again at this interval while it keeps waiting."""
_LEVELS = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
}


class ChildProcess(Protocol):
    """What a ``WorkerProcess`` uses of its child: ``subprocess.Popen``'s surface."""

    pid: int
    stdin: IO[bytes] | None
    stdout: IO[bytes] | None
    stderr: IO[bytes] | None

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...

    def terminate(self) -> None: ...

    def kill(self) -> None: ...


Spawner = Callable[..., ChildProcess]
"""Starts a child with ``subprocess.Popen``'s arguments (argv, pipes, env, cwd, ...)."""


class WorkerProcess:
    """One worker OS process: start, handshake, stderr forwarding, stop."""

    owned = True
    """Closing the connection stops the worker: this host started it and nobody else uses it."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        name: str,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        startup_timeout: float = 60.0,
        log_path: Path | None = None,
        loopback_only: bool = True,
    ) -> None:
        if not argv:
            raise WorkerStartError(f"worker {name!r}: the command is empty")
        self.argv = list(argv)
        self.name = name
        self.startup_timeout = startup_timeout
        self._env = dict(env) if env is not None else None
        self._cwd = cwd
        self.log_path = log_path
        self.loopback_only = loopback_only
        """False for a worker told to listen on its node's address (mutual TLS, Ray)."""
        self.spawner: Spawner = subprocess.Popen
        """What starts the process: ``subprocess.Popen``, or a worker template's ``spawn``."""
        self._proc: ChildProcess | None = None
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._threads: list[threading.Thread] = []
        self._handshake_lines: queue.Queue[str | None] = queue.Queue()
        self.handshake: Handshake | None = None
        self._rejected_line = ""
        """A handshake line refused: the socket folder it names is removed with the worker."""
        self._logger = logging.getLogger(f"swayhost.worker.{name}")

    # -- start -------------------------------------------------------------

    def start(self) -> Handshake:
        """Spawn the worker and return its validated handshake."""
        refuse_inside_worker(f"starting worker {self.name!r}")
        env = self.environment(detached=self.log_path is not None)
        try:
            with self._stderr_target() as stderr:
                self._proc = self.spawner(
                    self.argv,
                    stdin=subprocess.PIPE if self.log_path is None else subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=stderr,
                    env=env,
                    cwd=self._cwd,
                    close_fds=True,
                    start_new_session=True,
                )
        except OSError as exc:
            raise WorkerStartError(
                f"worker {self.name!r}: cannot run {shlex.join(self.argv)}: {exc}. "
                "Check the interpreter or command path in the worker's configuration."
            ) from exc
        self._spawn_thread(self._read_stdout, "stdout")
        if self.log_path is None:
            self._spawn_thread(self._read_stderr, "stderr")
        try:
            self.handshake = self._await_handshake()
            self._check_socket(self.handshake)
        except WorkerStartError:
            self.kill()
            raise
        log.debug("worker %s (pid %d) listening on %s", self.name, self.pid, self.handshake.address)
        return self.handshake

    def run_in_place(self, extra_env: Mapping[str, str]) -> NoReturn:
        """Become the worker (exec), detached: a service is its own process, nobody's child.

        Signals then reach the worker itself, and its pid is the one a
        service manager started.
        """
        env = self.environment(detached=True) | dict(extra_env)
        if self._cwd is not None:
            os.chdir(self._cwd)
        try:
            os.execvpe(self.argv[0], self.argv, env)
        except OSError as exc:
            raise WorkerStartError(
                f"worker {self.name!r}: cannot run {shlex.join(self.argv)}: {exc}"
            ) from exc

    def environment(self, *, detached: bool) -> dict[str, str]:
        """The worker's variables: the cookie, and either the host's pid or the detached flag.

        An owned worker is also offered the local framed path (unless the
        caller's variables say ``SWAY_PLUGIN_FRAMES=0``); a detached one is
        reattached by its gRPC address alone, so it is not.
        """
        env = dict(os.environ if self._env is None else self._env)
        env.setdefault(MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE)
        env.setdefault("PYTHONUNBUFFERED", "1")
        if detached:
            env[DETACHED_ENV] = "1"
            env.pop(HOST_PID_ENV, None)
            env.pop(FRAMES_ENV, None)
        else:
            env[HOST_PID_ENV] = str(os.getpid())
            env.pop(DETACHED_ENV, None)
            env.setdefault(FRAMES_ENV, "1")
        return env

    @contextlib.contextmanager
    def _stderr_target(self) -> Iterator[int | IO[bytes]]:
        """A pipe to forward, or, detached, the log file (ours closed once the child has it)."""
        if self.log_path is None:
            yield subprocess.PIPE
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "ab") as log_file:
            yield log_file

    def open_channel(self, options: list[tuple[str, Any]]) -> grpc.Channel:
        """A plaintext channel: the socket is private to this user (0600 in a 0700 folder)."""
        assert self.handshake is not None, "start() the worker first"
        return grpc.insecure_channel(self.handshake.grpc_target, options=options)

    def _spawn_thread(self, target: Callable[[], None], stream: str) -> None:
        thread = threading.Thread(
            target=target,
            name=f"swayhost-{self.name}-{stream}",
            daemon=True,
        )
        thread.start()
        self._threads.append(thread)

    def _await_handshake(self) -> Handshake:
        started = time.monotonic()
        deadline = started + self.startup_timeout
        notice = started + WAIT_NOTICE_S
        while True:
            try:
                line = self._handshake_lines.get(timeout=0.05)
            except queue.Empty:
                line = ""
            if line is None or (not line and self.poll() is not None):
                self.wait(2.0)  # stdout closes a moment before the exit is reaped
                self._join_readers(1.0)
                raise WorkerStartError(
                    f"worker {self.name!r} exited with {self.describe_exit()} before its "
                    f"handshake.{self.stderr_excerpt()}"
                )
            if line:
                return self._parse_handshake(line)
            now = time.monotonic()
            if now > notice and now <= deadline:
                log.warning(
                    "worker %s (pid %d) has printed no handshake after %.0fs; still waiting up "
                    "to %gs for its first stdout line (%s)",
                    self.name,
                    self.pid,
                    now - started,
                    self.startup_timeout,
                    shlex.join(self.argv),
                )
                notice = now + WAIT_NOTICE_EVERY_S
            if now > deadline:
                raise WorkerStartError(
                    f"worker {self.name!r} printed no handshake within {self.startup_timeout:g}s "
                    f"({shlex.join(self.argv)}). Raise startup_timeout if the worker is just slow "
                    f"to import, or check that it calls serve().{self.stderr_excerpt()}"
                )

    def _parse_handshake(self, line: str) -> Handshake:
        if len(line.encode("utf-8", "replace")) >= HANDSHAKE_MAX_BYTES:
            raise WorkerStartError(
                f"worker {self.name!r} printed non-handshake output on stdout (more than "
                f"{HANDSHAKE_MAX_BYTES} bytes with no newline), starting "
                f"{shown(line)}. A worker must print 'CORE|PROTOCOL|unix|ADDRESS|grpc' as its "
                "first stdout line and log to stderr (see docs/writing-a-worker.md)."
                f"{self.stderr_excerpt()}"
            )
        try:
            return parse_handshake(line, loopback_only=self.loopback_only)
        except HandshakeError as exc:
            self._rejected_line = line
            raise WorkerStartError(
                f"worker {self.name!r} printed an invalid handshake line: {exc}. "
                "A worker must print 'CORE|PROTOCOL|unix|ADDRESS|grpc' as its first "
                f"stdout line (see docs/writing-a-worker.md).{self.stderr_excerpt()}"
            ) from exc

    def _check_socket(self, handshake: Handshake) -> None:
        """Fail at once on a Unix socket path with nothing there, not after the timeout."""
        if handshake.network != "unix":
            return
        for what, path in (("socket", handshake.address), ("framed-path socket", handshake.frames)):
            if path and not is_socket(path):
                raise WorkerStartError(
                    f"worker {self.name!r} named the {what} {path} in its handshake, but "
                    f"{_no_socket_reason(path)}. A worker must print its handshake only once "
                    "its server listens on that socket (see docs/writing-a-worker.md)."
                    f"{self.stderr_excerpt()}"
                )

    # -- streams -----------------------------------------------------------

    def _read_stdout(self) -> None:
        """The first line (capped) to the handshake queue, the rest to the log.

        Lines are read with a cap: a worker printing megabytes with no newline
        is reported at once instead of when it exits.
        """
        assert self._proc is not None and self._proc.stdout is not None
        stdout = self._proc.stdout
        raw = stdout.readline(HANDSHAKE_MAX_BYTES)
        if raw:
            self._handshake_lines.put(raw.decode("utf-8", "replace").rstrip("\n"))
            for raw in iter(lambda: stdout.readline(STDOUT_LINE_MAX_BYTES), b""):
                self._logger.info("stdout: %s", raw.decode("utf-8", "replace").rstrip("\n"))
        self._handshake_lines.put(None)

    def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        for raw in iter(self._proc.stderr.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self._stderr_tail.append(line)
            head = line.split(" ", 1)[0]
            self._logger.log(_LEVELS.get(head, logging.INFO), "%s", line)

    def _join_readers(self, timeout: float) -> None:
        for thread in self._threads:
            thread.join(timeout)

    # -- status ------------------------------------------------------------

    @property
    def pid(self) -> int:
        return self._proc.pid if self._proc is not None else -1

    def poll(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def describe_exit(self) -> str:
        """'code 3' or 'signal SIGKILL' for an exited worker."""
        code = self.poll()
        if code is None:
            return "no exit (still running)"
        if code < 0:
            try:
                return f"signal {signal.Signals(-code).name}"
            except ValueError:
                return f"signal {-code}"
        return f"code {code}"

    def stderr_tail(self, lines: int = 20) -> list[str]:
        if self.log_path is not None:
            return log_tail(self.log_path, lines)
        return list(self._stderr_tail)[-lines:]

    def stderr_excerpt(self, lines: int = 20) -> str:
        return excerpt(self.stderr_tail(lines))

    # -- stop --------------------------------------------------------------

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the process to exit; True if it did."""
        if self._proc is None:
            return True
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def reap(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` s for the exit and its last output lines; the exit code.

        The exit is seen before the readers drain the pipes, and an exit
        cause built from a half-read stderr would miss the traceback.
        """
        if self.wait(timeout):
            self._join_readers(1.0)
        return self.poll()

    def terminate(self, grace: float = 2.0) -> None:
        """SIGTERM to the worker's process group, SIGKILL after ``grace`` s; then clean up.

        The group, not just the process: a wrapper command (``sh -c ...``)
        leaves its children running otherwise, holding our pipes open.
        """
        if self._proc is not None and (self.alive() or self._group_alive()):
            self._signal_group(signal.SIGTERM)
            if not (self.wait(grace) and self._group_gone(grace)):
                log.warning("worker %s ignored SIGTERM for %.1fs; killing it", self.name, grace)
                self.kill()
                return
        self._cleanup()

    def kill(self) -> None:
        """SIGKILL the worker's process group, then clean up."""
        if self._proc is not None and (self.alive() or self._group_alive()):
            self._signal_group(signal.SIGKILL)
            self.wait(5.0)
            self._group_gone(1.0)
        self._cleanup()

    def _signal_group(self, signum: int) -> None:
        """Signal the worker's group: its pid, since each worker starts its own session.

        Once the worker is reaped its pid is only signalled while a process
        still has it as group id (the kernel does not reuse it meanwhile).
        """
        assert self._proc is not None
        if self.alive():
            try:
                os.killpg(self._proc.pid, signum)
                return
            except (ProcessLookupError, PermissionError):
                pass
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._proc.pid, signum)
        elif self._group_alive():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signum)

    def _group_alive(self) -> bool:
        """Whether a process of the (reaped) worker's group is left, e.g. a wrapper's child."""
        if self._proc is None or self.alive():
            return False
        return group_alive(self._proc.pid)

    def _group_gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self._group_alive():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def _cleanup(self) -> None:
        """Close our pipe ends, join readers and remove the socket folder.

        A pipe a reader still blocks on (a process outside the worker's group
        holds it open) is left to that reader: closing it would wait for it.
        """
        if self._proc is not None and self._proc.stdin is not None:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
        self._join_readers(2.0)
        if any(thread.is_alive() for thread in self._threads):
            log.warning("worker %s: a process outside its group holds its pipes open", self.name)
        else:
            for stream in (self._proc.stdout, self._proc.stderr) if self._proc else ():
                if stream is not None:
                    stream.close()
        if self.handshake is not None and self.handshake.network == "unix":
            remove_socket_folder(self.handshake.address)
        for path in socket_paths_in(self._rejected_line):
            remove_socket_folder(path)


def log_tail(path: Path, lines: int) -> list[str]:
    """The last ``lines`` lines of a worker's log file (empty when there is none)."""
    try:
        with path.open("rb") as log_file:
            log_file.seek(max(0, path.stat().st_size - 64 * 1024))
            text = log_file.read().decode("utf-8", "replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]


def shown(output: str) -> str:
    """A worker's stray output, quoted and cut to ``SHOWN_OUTPUT_CHARS``."""
    if len(output) <= SHOWN_OUTPUT_CHARS:
        return repr(output)
    return f"{output[:SHOWN_OUTPUT_CHARS]!r}..."


def group_alive(pgid: int) -> bool:
    """Whether a live process is in group ``pgid``; zombies are not.

    A killed wrapper's child is a zombie until init reaps it, and a
    container's init may never do so; signal 0 would count it for good.
    """
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        return True  # no /proc to tell zombies apart: whatever answers counts
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state, _ppid, group = (entry / "stat").read_text().rpartition(")")[2].split()[:3]
        except (OSError, ValueError):
            continue
        if group == str(pgid) and state != "Z":
            return True
    return False


def is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


def _no_socket_reason(path: str) -> str:
    try:
        os.stat(path)
    except OSError as exc:
        return f"it cannot be reached: {exc.strerror or exc}"
    return "that is not a socket"


def excerpt(tail: list[str]) -> str:
    """The last stderr lines, indented, to end an error message with (empty when none)."""
    if not tail:
        return ""
    return "\nLast stderr lines:\n  " + "\n  ".join(tail)


def socket_paths_in(line: str) -> list[str]:
    """The absolute paths in a handshake line the host refused (address, ``frames:`` field).

    The worker is killed before it can clean up, so its private folder would
    be left behind; ``remove_socket_folder`` removes only a ``swayworker-*`` one.
    """
    fields = (f.strip().removeprefix(FRAMES_PREFIX) for f in line.split("|"))
    return [f for f in fields if f.startswith("/")]


def remove_socket_folder(socket_path: str) -> None:
    """Remove a worker's private socket folder, which it leaves behind when it is killed."""
    folder = Path(socket_path).parent
    if folder.name.startswith("swayworker-"):
        shutil.rmtree(folder, ignore_errors=True)
