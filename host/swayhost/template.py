"""Fresh workers forked from a pre-imported template: restarts without the import cost.

A worker restarted after a crash is a new interpreter that imports torch,
transformers and peft again: seconds before its model even starts to load.
With ``RecoveryPolicy(fork_template=True)`` the host keeps one template
process per backend (``python -m swayworker.template MODULE``) that has done
those imports once and forks each new worker (see ``swayworker.template``).

Below the endpoint nothing changes: ``WorkerProcess`` starts a worker through
a *spawner*, ``subprocess.Popen`` by default; ``WorkerTemplate.spawn`` is one
with the same signature and a Popen-like result (``ForkedChild``): the
child's pipes are made here and handed to the template with the fork request,
so the worker's stdin is this host's pipe, its stdout carries the handshake
line and its stderr is forwarded, exactly as for a spawned worker.

Only built-in Python workers run as ``python -m MODULE`` have a template; any
other command is spawned as before.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from typing import IO, Any

from swayworker.template import TEMPLATE_PREFIX

from swayhost.errors import WorkerStartError

log = logging.getLogger("swayhost")


def template_module(argv: Sequence[str]) -> str | None:
    """The module of a ``PYTHON -m swayworker.KIND`` command (None: no template fits)."""
    if len(argv) == 3 and argv[1] == "-m" and argv[2].startswith("swayworker."):
        return argv[2]
    return None


class ForkedChild:
    """The part of ``subprocess.Popen`` a ``WorkerProcess`` uses, for a template's child."""

    def __init__(self, template: WorkerTemplate, pid: int, pipes: dict[str, IO[bytes]]) -> None:
        self._template = template
        self.pid = pid
        self.stdin: IO[bytes] | None = pipes.get("stdin")
        self.stdout: IO[bytes] | None = pipes.get("stdout")
        self.stderr: IO[bytes] | None = pipes.get("stderr")
        self.returncode: int | None = None
        self._exit_fd = _pidfd(pid)
        """Readable once the worker has exited: ``poll`` asks the template only then."""

    def poll(self) -> int | None:
        """The return code once the worker has exited, else None.

        The host polls before every call, so a poll that is a round trip to
        the template cost a sixth of a small call; the pidfd makes it a
        system call, and the template is asked only for the code itself.
        """
        if self.returncode is None and self._has_exited():
            self.returncode = self._template.returncode(self.pid)
            if self.returncode is not None and self._exit_fd is not None:
                os.close(self._exit_fd)
                self._exit_fd = None
        return self.returncode

    def _has_exited(self) -> bool:
        if self._exit_fd is None:
            return True  # no pidfd: the template is the only one who knows
        readable, _, _ = select.select([self._exit_fd], [], [], 0)
        return bool(readable)

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while (code := self.poll()) is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"worker pid {self.pid}", timeout or 0.0)
            time.sleep(0.01)
        return code

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # it has just exited
                os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def _pidfd(pid: int) -> int | None:
    """A pidfd for ``pid`` (Linux 5.3+), None where there is none or it has gone."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


class WorkerTemplate:
    """One template process, started with the worker's own interpreter and variables.

    A template that cannot start raises ``WorkerStartError``; the launcher
    then spawns workers directly, so a user sees the worker's own start-up
    error (a bad interpreter, a missing package), never the template's.
    """

    def __init__(
        self, python: str, module: str, env: Mapping[str, str], name: str, timeout: float
    ) -> None:
        self.name = name
        self._lock = threading.Lock()
        try:
            self._proc = subprocess.Popen(
                [python, "-m", "swayworker.template", module],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,  # its children have stderr pipes of their own
                env=dict(env),
                close_fds=True,
                start_new_session=True,
            )
        except OSError as exc:
            raise WorkerStartError(f"worker {name!r}: no template: {exc}") from exc
        line = self._first_line(timeout)
        if not line.startswith(TEMPLATE_PREFIX):
            self.close()
            raise WorkerStartError(f"worker {name!r}: its template did not start (said {line!r})")
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._socket.connect(line[len(TEMPLATE_PREFIX) :])
        self._replies = self._socket.makefile("rb")
        log.debug("worker %s: template pid %d ready", name, self._proc.pid)

    @property
    def pid(self) -> int:
        return self._proc.pid

    def _first_line(self, timeout: float) -> str:
        """The template's line naming its socket ("" if none comes within ``timeout``)."""
        assert self._proc.stdout is not None
        ready, _, _ = select.select([self._proc.stdout], [], [], timeout)
        if not ready:
            return ""
        return self._proc.stdout.readline().decode(errors="replace").strip()

    def alive(self) -> bool:
        return self._proc.poll() is None

    def spawn(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: str | os.PathLike[str] | None = None,
        **popen: Any,
    ) -> ForkedChild:
        """Fork a worker (``subprocess.Popen``'s signature; pipes only, as a worker uses).

        ``argv`` is the command the worker would have been spawned with: the
        template runs its module, in ``cwd`` with ``env`` (this process's own
        variables when None, as Popen does).
        """
        ours: dict[str, IO[bytes]] = {}
        theirs: list[int] = []
        for stream, mode in (("stdin", "wb"), ("stdout", "rb"), ("stderr", "rb")):
            read, write = os.pipe()
            child_end, our_end = (read, write) if stream == "stdin" else (write, read)
            theirs.append(child_end)
            ours[stream] = os.fdopen(our_end, mode)
        try:
            request = {"fork": dict(os.environ if env is None else env), "cwd": str(cwd or "")}
            reply = self._request(request, fds=theirs)
        except (OSError, ValueError) as exc:
            for pipe in ours.values():
                pipe.close()
            raise OSError(f"the worker template (pid {self.pid}) could not fork: {exc}") from exc
        finally:
            for fd in theirs:
                os.close(fd)
        return ForkedChild(self, int(reply["pid"]), ours)

    def returncode(self, pid: int) -> int | None:
        """A forked worker's return code (Popen's form), None while it runs."""
        if not self.alive():
            try:  # no template to ask: a child it left is gone or orphaned
                os.kill(pid, 0)
            except ProcessLookupError:
                return -signal.SIGKILL
            return None
        try:
            code = self._request({"status": pid})["returncode"]
        except (OSError, ValueError):
            return None
        return None if code is None else int(code)

    def _request(self, request: dict[str, Any], fds: Sequence[int] = ()) -> dict[str, Any]:
        with self._lock:
            payload = json.dumps(request).encode() + b"\n"
            socket.send_fds(self._socket, [payload], list(fds))
            line = self._replies.readline()
        if not line:
            raise OSError("the template closed its socket")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise ValueError(reply["error"])
        return reply

    def close(self) -> None:
        """Stop the template (its workers are stopped by their own endpoints)."""
        if self._proc.stdin is not None:
            self._proc.stdin.close()  # the template exits when its stdin closes
        try:
            self._proc.wait(2.0)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(2.0)
        if self._proc.stdout is not None:
            self._proc.stdout.close()
        if hasattr(self, "_socket"):
            self._replies.close()
            self._socket.close()
