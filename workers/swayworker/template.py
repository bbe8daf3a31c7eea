"""``python -m swayworker.template MODULE``: a pre-imported process that forks fresh workers.

Most of an HF worker's cold start is importing torch, transformers and peft
(seconds); a worker restarted after a crash pays it again. A template pays
it once: it imports ``MODULE`` (a worker's ``__main__`` module, e.g.
``swayworker.hf.__main__``) and runs its ``import_frameworks`` warm-up, then
waits. Each fork request gets a child that already holds every import and
runs ``MODULE`` as ``__main__``, exactly as ``python -m`` would, so a
restart costs a fork, a handshake and the model load. Pages are shared
copy-on-write, so the template costs its imports' memory once, not a second
worker with a model (a standby worker).

Fork safety: the template stays single-threaded (one ``select`` loop, no
helper threads) and creates no gRPC object and runs no torch op before it
forks, so a child inherits no lock held by another thread, no gRPC
completion queue and no OpenMP pool.

Protocol, over a Unix socket in a private 0700 folder, which the template
names on stdout as ``template|<socket path>``: each request is one JSON line;
``{"fork": {env}}`` carries three file descriptors (SCM_RIGHTS), the child's
stdin, stdout and stderr, and is answered ``{"pid": N}``; ``{"status": N}`` is
answered ``{"returncode": R}`` (``null`` while child N runs). The template
exits when its stdin closes (its host went away), and its children, whose
parent it is, then get their parent-death signal.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
import runpy
import select
import shutil
import signal
import socket
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

from swayworker.lifeline import arm_parent_death, host_pid
from swayworker.protocol import HOST_PID_ENV, MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE

TEMPLATE_PREFIX = "template|"
"""How the line naming the template's socket starts."""
FDS_PER_FORK = 3


class Template:
    """The fork server: one listening socket, one host connection at a time."""

    def __init__(self, module: str, folder: Path, stop: StopPipe) -> None:
        self.module = module
        self.folder = folder
        self.stop = stop
        self.path = folder / "template.sock"
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(self.path))
        os.chmod(self.path, 0o600)
        self.listener.listen(4)
        self.returncodes: dict[int, int] = {}
        self.children: set[int] = set()
        self.buffers: dict[socket.socket, bytes] = {}
        """Each host connection, and what it sent that is not a whole line yet."""
        self.pending_fds: dict[socket.socket, list[int]] = {}
        """Descriptors that came with a line not yet complete."""

    def serve(self) -> None:
        """Answer requests until stdin closes or a stop is signalled; only ever one thread."""
        stop = self.stop.read_end
        while True:
            self.reap()
            watched: list[Any] = [0, stop, self.listener, *self.buffers]  # 0: the host's pipe
            readable, _, _ = select.select(watched, [], [], 0.5)
            if stop in readable or (0 in readable and not os.read(0, 4096)):
                return  # told to stop, or the host went away
            if self.listener in readable:
                conn, _ = self.listener.accept()
                self.buffers[conn] = b""
            for conn in [c for c in self.buffers if c in readable]:
                if not self._read(conn):
                    del self.buffers[conn]
                    conn.close()

    def _read(self, conn: socket.socket) -> bool:
        """Handle what ``conn`` sent; False when it closed."""
        data, fds, _, _ = socket.recv_fds(conn, 65536, FDS_PER_FORK)
        fds = self.pending_fds.pop(conn, []) + list(fds)
        if not data:
            for fd in fds:
                os.close(fd)
            return False
        self.buffers[conn] += data
        while b"\n" in self.buffers[conn]:
            line, self.buffers[conn] = self.buffers[conn].split(b"\n", 1)
            request = json.loads(line)
            reply = self._answer(request, fds)
            fds = []  # a fork takes the descriptors that came with it
            conn.sendall(json.dumps(reply).encode() + b"\n")
        if fds:  # the line they came with is not complete yet
            self.pending_fds[conn] = fds
        return True

    def _answer(self, request: dict[str, Any], fds: list[int]) -> dict[str, Any]:
        if "status" in request:
            self.reap()
            return {"returncode": self.returncodes.get(int(request["status"]))}
        if "fork" in request and len(fds) == FDS_PER_FORK:
            pid = self.fork(dict(request["fork"]), str(request.get("cwd") or ""), fds)
            for fd in fds:
                os.close(fd)
            return {"pid": pid}
        return {"error": f"not a request this template answers: {sorted(request)}"}

    def fork(self, env: dict[str, str], cwd: str, fds: list[int]) -> int:
        pid = os.fork()
        if pid:
            self.children.add(pid)
            return pid
        try:  # the child: become the worker
            self._become_worker(env, cwd, fds)
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(1)  # serve() exits itself; reaching here means it failed

    def _become_worker(self, env: dict[str, str], cwd: str, fds: list[int]) -> None:
        os.setsid()  # its own process group, as a spawned worker has
        self.stop.close_in_child()  # the template's unwinding is not ours
        if cwd:
            os.chdir(cwd)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in fds:
            os.close(fd)
        self.listener.close()
        for conn in self.buffers:
            conn.close()
        os.environ.clear()
        os.environ.update(env)
        # The template is the parent: the worker's lifeline watches it (and its
        # stdin, which the host holds), and the template watches the host.
        os.environ[HOST_PID_ENV] = str(os.getppid())
        sys.argv = [self.module]
        runpy.run_module(self.module, run_name="__main__", alter_sys=True)

    def reap(self) -> None:
        """Collect every child that has exited, keeping its return code (Popen's form)."""
        for pid in list(self.children):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # reaped elsewhere: the code is lost
                done, status = pid, None
            if done == 0:
                continue
            self.children.discard(pid)
            self.returncodes[pid] = -1 if status is None else os.waitstatus_to_exitcode(status)


def _exit_when_host_dies(reason: str) -> None:
    """The host died while we were still importing: nothing to clean up yet."""
    sys.exit(0)


class StopPipe:
    """From the serve loop on, SIGTERM and the host's death only wake the loop.

    An exception raised by a signal handler can land anywhere, including in
    the middle of removing the socket folder (stdin EOF and the parent-death
    signal come together when the host dies), which then stays behind. A
    byte on a pipe the loop watches cannot interrupt anything.
    """

    def __init__(self) -> None:
        self.read_end, self.write_end = os.pipe()
        os.set_blocking(self.write_end, False)
        signal.signal(signal.SIGTERM, self.wake)
        arm_parent_death(host_pid(), self.wake)

    def wake(self, *_: object) -> None:
        with contextlib.suppress(OSError):  # the pipe is full: a stop is pending anyway
            os.write(self.write_end, b"x")

    def close_in_child(self) -> None:
        """A forked worker has its own lifeline: none of this is its business."""
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGUSR2, signal.SIG_DFL)
        os.close(self.read_end)
        os.close(self.write_end)


def _main_module(name: str) -> str:
    """What ``python -m NAME`` runs: ``NAME.__main__`` for a package, else ``NAME``."""
    spec = importlib.util.find_spec(name)
    if spec is not None and spec.submodule_search_locations is not None:
        return f"{name}.__main__"
    return name


def main(argv: list[str]) -> int:
    if os.environ.get(MAGIC_COOKIE_KEY) != MAGIC_COOKIE_VALUE:
        sys.stderr.write("This is a sway worker template, started by swayhost, not by hand.\n")
        return 1
    if len(argv) != 1:
        sys.stderr.write("usage: python -m swayworker.template WORKER_MAIN_MODULE\n")
        return 2
    # While importing, SIGTERM and the host's death exit at once (nothing to
    # clean up yet); StopPipe takes over before the socket folder exists. The
    # host may have started us from a thread that exits long before it does
    # (a thread pool): lifeline's rule, not a bare parent-death signal.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    arm_parent_death(host_pid(), _exit_when_host_dies)
    module = _main_module(argv[0])
    stdout = os.dup(1)
    os.dup2(2, 1)  # whatever the imports print must not come before our line
    try:
        loaded = importlib.import_module(module)  # its `__main__` guard keeps serve() from running
        warmup = getattr(loaded, "import_frameworks", None)
        if callable(warmup):
            warmup()
    finally:
        sys.stdout.flush()
        os.dup2(stdout, 1)
        os.close(stdout)
    stop = StopPipe()
    folder = Path(tempfile.mkdtemp(prefix="swayworker-template-"))
    try:
        template = Template(module, folder, stop)
        sys.stdout.write(f"{TEMPLATE_PREFIX}{template.path}\n")
        sys.stdout.flush()
        template.serve()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    # Nothing is left to release: skip interpreter finalisation, which with
    # torch imported takes over a second, and the host's close waits for us.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
