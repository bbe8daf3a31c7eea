"""What a connection needs from the thing that runs a worker, wherever it runs.

A ``WorkerConnection`` and its ``Supervisor`` drive a worker through this
interface only. ``WorkerProcess`` (a child process on a Unix socket) is the
usual one; the others reach workers this host did not start as children:
a long-lived service attached by address (``swayhost.remote``), a detached
worker a later host reattaches to (``swayhost.detached``), and a Ray actor
(``swayhost.ray``). Each says how to open its channel (plaintext on a
private socket, or TLS and a bearer token over TCP) and whether it *owns*
the worker: closing a connection stops an owned worker (Shutdown, SIGTERM,
SIGKILL) and only disconnects from one it does not own.
"""

from __future__ import annotations

from typing import Any, Protocol

import grpc
from swayworker.protocol import Handshake


class WorkerEndpoint(Protocol):
    """Start or find a worker, open a channel to it, tell whether it still runs, stop it."""

    name: str
    startup_timeout: float
    handshake: Handshake | None
    """Where the worker listens, once started."""

    @property
    def owned(self) -> bool:
        """Whether closing the connection stops the worker."""
        ...

    @property
    def pid(self) -> int:
        """The worker's pid on its machine (-1 when unknown)."""
        ...

    def start(self) -> Handshake:
        """Start (or find) the worker; where it listens."""
        ...

    def open_channel(self, options: list[tuple[str, Any]]) -> grpc.Channel:
        """A channel to the started worker, with the credentials it requires."""
        ...

    def alive(self) -> bool: ...

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the worker to end; True if it has."""
        ...

    def reap(self, timeout: float) -> int | None:
        """Like ``wait``; the exit code when it is known."""
        ...

    def terminate(self, grace: float = 2.0) -> None: ...

    def kill(self) -> None: ...

    def describe_exit(self) -> str: ...

    def stderr_tail(self, lines: int = 20) -> list[str]: ...

    def stderr_excerpt(self, lines: int = 20) -> str: ...
