"""Spawning a worker process and reading its handshake.

The host owns the worker's stdin (never written, closed only by the host's
death or ``stop()``, which is how the worker notices an orphaning), reads
exactly one handshake line from stdout within a start-up timeout, and
forwards stderr line by line into ``logging`` under the worker's name while
keeping the last lines for error messages.
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
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from swayworker.protocol import (
    HOST_PID_ENV,
    MAGIC_COOKIE_KEY,
    MAGIC_COOKIE_VALUE,
    Handshake,
    HandshakeError,
    parse_handshake,
)

from swayhost.errors import WorkerStartError

log = logging.getLogger("swayhost")

STDERR_TAIL_LINES = 200
_LEVELS = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
}


class WorkerProcess:
    """One worker OS process: start, handshake, stderr forwarding, stop."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        name: str,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        if not argv:
            raise WorkerStartError(f"worker {name!r}: the command is empty")
        self.argv = list(argv)
        self.name = name
        self.startup_timeout = startup_timeout
        self._env = dict(env) if env is not None else None
        self._cwd = cwd
        self._proc: subprocess.Popen[bytes] | None = None
        self._stderr_tail: collections.deque[str] = collections.deque(maxlen=STDERR_TAIL_LINES)
        self._threads: list[threading.Thread] = []
        self._handshake_lines: queue.Queue[str | None] = queue.Queue()
        self.handshake: Handshake | None = None
        self._logger = logging.getLogger(f"swayhost.worker.{name}")

    # -- start -------------------------------------------------------------

    def start(self) -> Handshake:
        """Spawn the worker and return its validated handshake."""
        env = dict(os.environ if self._env is None else self._env)
        env.setdefault(MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE)
        env[HOST_PID_ENV] = str(os.getpid())
        env.setdefault("PYTHONUNBUFFERED", "1")
        try:
            self._proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
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
        self._spawn_thread(self._read_stderr, "stderr")
        try:
            self.handshake = self._await_handshake()
        except WorkerStartError:
            self.kill()
            raise
        log.debug("worker %s (pid %d) listening on %s", self.name, self.pid, self.handshake.address)
        return self.handshake

    def _spawn_thread(self, target: Callable[[], None], stream: str) -> None:
        thread = threading.Thread(
            target=target,
            name=f"swayhost-{self.name}-{stream}",
            daemon=True,
        )
        thread.start()
        self._threads.append(thread)

    def _await_handshake(self) -> Handshake:
        deadline = time.monotonic() + self.startup_timeout
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
                try:
                    return parse_handshake(line)
                except HandshakeError as exc:
                    raise WorkerStartError(
                        f"worker {self.name!r} printed an invalid handshake line: {exc}. "
                        "A worker must print 'CORE|PROTOCOL|unix|ADDRESS|grpc' as its first "
                        f"stdout line (see docs/writing-a-worker.md).{self.stderr_excerpt()}"
                    ) from exc
            if time.monotonic() > deadline:
                raise WorkerStartError(
                    f"worker {self.name!r} printed no handshake within {self.startup_timeout:g}s "
                    f"({shlex.join(self.argv)}). Raise startup_timeout if the worker is just slow "
                    f"to import, or check that it calls serve().{self.stderr_excerpt()}"
                )

    # -- streams -----------------------------------------------------------

    def _read_stdout(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        first = True
        for raw in iter(self._proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if first:
                self._handshake_lines.put(line)
                first = False
            else:
                self._logger.info("stdout: %s", line)
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
        return list(self._stderr_tail)[-lines:]

    def stderr_excerpt(self, lines: int = 20) -> str:
        tail = self.stderr_tail(lines)
        if not tail:
            return ""
        return "\nLast stderr lines:\n  " + "\n  ".join(tail)

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
        """SIGTERM, then SIGKILL after ``grace`` seconds; then clean up."""
        if self._proc is not None and self.alive():
            self._proc.terminate()
            if not self.wait(grace):
                log.warning("worker %s ignored SIGTERM for %.1fs; killing it", self.name, grace)
                self.kill()
                return
        self._cleanup()

    def kill(self) -> None:
        if self._proc is not None and self.alive():
            self._proc.kill()
            self.wait(5.0)
        self._cleanup()

    def _cleanup(self) -> None:
        """Close our pipe ends, join readers and remove the socket folder."""
        if self._proc is not None and self._proc.stdin is not None:
            with contextlib.suppress(OSError):
                self._proc.stdin.close()
        self._join_readers(2.0)
        for stream in (self._proc.stdout, self._proc.stderr) if self._proc else ():
            if stream is not None:
                stream.close()
        if self.handshake is not None and self.handshake.network == "unix":
            folder = Path(self.handshake.address).parent
            if folder.name.startswith("swayworker-"):
                shutil.rmtree(folder, ignore_errors=True)
