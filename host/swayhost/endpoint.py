"""Where a worker runs, as the layers above it see it: a launcher and its endpoints.

A ``Launcher`` says where workers run; each ``endpoint()`` call gives one
worker to start (or find) there, and the supervisor asks for a new one on
every restart. Four launchers exist, each beside its endpoint:

* ``swayhost.local.LocalLauncher``: a child process on a private Unix
  socket (``swayhost.process.WorkerProcess``);
* ``swayhost.detached.DetachedLauncher``: a process that outlives this host
  and is found again by name;
* ``swayhost.attached.AttachedLauncher``: a long-lived service reached by
  address, over mutual TLS with a bearer token;
* ``swayhost.ray.endpoint.RayLauncher`` (and a pool's): a worker in a Ray actor.

This is httpx's ``Client(transport=...)`` and go-plugin's ``Runner`` versus
``AttachedRunner``: the connection and supervisor drive every endpoint
through ``WorkerEndpoint`` only. Whether closing a connection *stops* the
worker is a type, not a flag: an ``OwnedEndpoint`` (a worker this host
started for itself) can be terminated; the others are only disconnected from.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import grpc
from swayworker.protocol import Handshake


@runtime_checkable
class WorkerEndpoint(Protocol):
    """Start or find a worker, open a channel to it, tell whether it still runs."""

    name: str
    startup_timeout: float
    handshake: Handshake | None
    """Where the worker listens, once started."""

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
        """Like ``wait``; the exit code when this host can see it (None otherwise)."""
        ...

    def kill(self) -> None:
        """End a worker found hung or unreachable, so that it can be replaced."""
        ...

    def describe_exit(self) -> str: ...

    def stderr_tail(self, lines: int = 20) -> list[str]: ...

    def stderr_excerpt(self, lines: int = 20) -> str: ...


@runtime_checkable
class OwnedEndpoint(WorkerEndpoint, Protocol):
    """A worker this host started for itself: closing the connection stops it."""

    def terminate(self, grace: float = 2.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` s; frees what the worker left behind."""
        ...


class Launcher(Protocol):
    """Where workers run: a fresh endpoint for each worker the supervisor needs."""

    def endpoint(self) -> WorkerEndpoint: ...


@runtime_checkable
class ClosingLauncher(Launcher, Protocol):
    """A launcher that holds something of its own (a worker template) until closed."""

    def close(self) -> None:
        """Free it; the supervisor calls this once its workers are stopped."""
        ...
