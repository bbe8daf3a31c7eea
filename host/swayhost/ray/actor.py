"""The Ray actor that runs one worker: a light parent, on whatever node Ray picked.

The actor starts the worker as its child process, exactly as a host does
(the same ``WorkerProcess``, so stdin and parent-death tie the worker to the
actor), but tells it to serve over TCP with a bearer token instead of a Unix
socket, because the host is not the worker's parent: on loopback when the
host shares the node, else on the node's address with mutual TLS
(``swayhost.ray.tls``). The actor is plain Python here; ``ray.remote`` is
applied by the host at run time, so importing this module imports no ``ray``.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from swayworker.remote import environment

from swayhost.process import WorkerProcess

if TYPE_CHECKING:  # the TLS module needs cryptography, which a loopback-only actor may lack
    from swayhost.ray.tls import Identity

LOOPBACK = "127.0.0.1:0"


class WorkerActor:
    """Starts (and restarts) one worker process and reports on it."""

    def __init__(
        self,
        *,
        kind: str,
        command: Sequence[str] | None,
        env: Mapping[str, str],
        cwd: str | None,
        name: str,
        startup_timeout: float,
    ) -> None:
        # The actor's own interpreter runs the worker: it is the one Ray's
        # runtime_env prepared on this node.
        self._argv = list(command) if command else [sys.executable, "-m", f"swayworker.{kind}"]
        self._env = dict(env)
        self._cwd = cwd
        self._name = name
        self._startup_timeout = startup_timeout
        self._process: WorkerProcess | None = None
        self._identity: Identity | None = None
        """The worker's TLS identity, while it serves mutual TLS."""

    def ensure_started(self, token: str, host_cert: bytes | None) -> tuple[str, int, bytes | None]:
        """The worker's address, pid and TLS certificate; it is started first unless it runs.

        With ``host_cert`` (the host's certificate, PEM) the worker listens on
        this node's address with mutual TLS, trusting that certificate only;
        without it, on loopback.
        """
        if self._process is None or not self._process.alive():
            if self._process is not None:
                self._process.kill()  # reap it and close its pipes
            listening = self._listening(token, host_cert)
            self._process = WorkerProcess(
                self._argv,
                name=self._name,
                env={**os.environ, **self._env, **listening},
                cwd=self._cwd,
                startup_timeout=self._startup_timeout,
                loopback_only=host_cert is None,
            )
            self._process.start()
        assert self._process.handshake is not None
        cert = self._identity.cert_pem if self._identity is not None else None
        return self._process.handshake.address, self._process.pid, cert

    def _listening(self, token: str, host_cert: bytes | None) -> dict[str, str]:
        """The variables that make the worker listen on loopback, or on this node with TLS."""
        if host_cert is None:
            return environment(LOOPBACK, token)
        import ray

        from swayhost.ray.tls import make_identity, trust  # cryptography, only for TLS

        node = str(ray.util.get_node_ip_address())  # type: ignore[no-untyped-call]
        if self._identity is None:
            self._identity = make_identity("swayhost-ray-worker", hosts=(node,), server=True)
        client_ca = trust(host_cert, self._identity)
        tls = (self._identity.cert, self._identity.key, client_ca)
        return environment(f"{node}:0", token, tls=tls)

    def node_id(self) -> str:
        import ray

        return str(ray.get_runtime_context().get_node_id())

    def exit_code(self) -> int | None:
        """None while the worker runs (or before it started)."""
        return None if self._process is None else self._process.poll()

    def describe_exit(self) -> str:
        return "not started" if self._process is None else self._process.describe_exit()

    def stderr_tail(self, lines: int) -> list[str]:
        return [] if self._process is None else self._process.stderr_tail(lines)

    def kill_worker(self) -> None:
        """SIGKILL the worker (found hung); ``ensure_started`` starts a new one."""
        if self._process is not None:
            self._process.kill()

    def stop_worker(self, grace: float) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; its TLS files go too."""
        if self._process is not None:
            self._process.terminate(grace)
        if self._identity is not None:
            shutil.rmtree(self._identity.folder, ignore_errors=True)
            self._identity = None
