"""A worker placed by Ray, as the host's connection sees it.

``RayEndpoint`` wraps one ``WorkerActor``. Starting it asks the actor for
its worker's address (the actor starts the worker if none runs) and the
host then talks to the worker directly over gRPC, with a bearer token the
host generated: Ray places and hosts workers, it does not carry the scoring
calls. A worker on this host's node listens on loopback; one on another node
listens on its node's address with mutual TLS (``swayhost.ray.tls``).

Liveness and exit details come from the actor; an actor that died (its node
lost, ``ray.kill``) counts as an exited worker, so the supervisor's recovery
applies unchanged: it starts a new actor, which Ray may place elsewhere.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

import grpc
import ray
from ray.actor import ActorHandle
from ray.exceptions import GetTimeoutError, RayError
from swayworker.protocol import CORE_PROTOCOL_VERSION, PROTOCOL_VERSION, Handshake

from swayhost.errors import WorkerStartError
from swayhost.process import excerpt
from swayhost.ray.actor import WorkerActor
from swayhost.ray.options import RayOptions
from swayhost.spec import ModelSpec
from swayhost.tls import TLSConfig, token_channel

CONTROL_TIMEOUT_S = 10.0
"""Longest wait for the actor to answer a question about its worker."""
ALIVE_CHECK_S = 1.0
"""How long a liveness answer is trusted: a call to a dead worker fails anyway and asks again."""


def connect(options: RayOptions) -> None:
    """Join the Ray cluster ``options.address`` names, unless this process already has."""
    if not ray.is_initialized():
        ray.init(address=options.address, log_to_driver=False)


def place(spec: ModelSpec, *, name: str | None = None) -> ActorHandle[WorkerActor]:
    """A new ``WorkerActor`` for ``spec``, with the resources and runtime_env it asks for."""
    options = spec.worker
    if options.python is not None or options.environment is not None:
        raise WorkerStartError(
            f"worker {name or spec.kind!r}: with launcher 'ray' the worker runs in Ray's "
            "runtime_env (RayOptions.runtime_env), not in WorkerOptions.python/environment"
        )
    connect(options.ray)
    actor_class = ray.remote(WorkerActor)
    handle = actor_class.options(**options.ray.actor_options()).remote(
        kind=spec.kind,
        command=options.command,
        env=dict(options.env),
        cwd=options.cwd,
        name=name or options.name or spec.kind,
        startup_timeout=options.startup_timeout,
    )
    assert isinstance(handle, ActorHandle)
    return handle


@dataclass(frozen=True)
class RayLauncher:
    """Each worker in a new Ray actor of its own, placed as ``spec.worker.ray`` asks."""

    spec: ModelSpec

    def endpoint(self) -> OwnedRayEndpoint:
        spec = self.spec
        return OwnedRayEndpoint(
            place(spec),
            token=secrets.token_urlsafe(32),
            name=spec.worker.name or spec.kind,
            startup_timeout=spec.worker.startup_timeout,
            tls=spec.worker.ray.tls,
        )


class RayEndpoint:
    """The worker of a Ray actor this endpoint does not own (a pool's): it outlives the endpoint.

    Killing it (a hung worker) kills the worker, never the actor, which
    starts a new worker when asked.
    """

    def __init__(
        self,
        actor: ActorHandle[WorkerActor],
        *,
        token: str,
        name: str,
        startup_timeout: float,
        tls: bool | None,
    ) -> None:
        self.name = name
        self.startup_timeout = startup_timeout
        self.handshake: Handshake | None = None
        self._actor = actor
        self._token = token
        """The token the actor's worker requires; it lives as long as the actor, like the worker."""
        self._pid = -1
        self._exit: tuple[int | None, str, list[str]] | None = None
        """Exit code, description and stderr tail, kept once the worker is seen gone."""
        self._checked_at = 0.0
        self._lock = threading.Lock()
        self._tls = tls
        self._tls_config: TLSConfig | None = None

    @property
    def pid(self) -> int:
        return self._pid

    def start(self) -> Handshake:
        try:
            # The first answer waits for Ray to place the actor: the start-up timeout applies.
            there = self._ask(self._actor.node_id.remote(), self.startup_timeout)
            secure = self._tls if self._tls is not None else there != _this_node()
            host_cert = _host_cert() if secure else None
            address, self._pid, worker_cert = self._ask(
                self._actor.ensure_started.remote(self._token, host_cert), self.startup_timeout
            )
        except GetTimeoutError:
            self._release()
            raise WorkerStartError(
                f"worker {self.name!r}: Ray did not start it within {self.startup_timeout:g}s; "
                "the cluster may lack the resources it asks for (RayOptions num_cpus, "
                "num_gpus, resources), or its runtime_env is still being built"
            ) from None
        except RayError as exc:
            self._release()
            raise WorkerStartError(f"worker {self.name!r} could not start in Ray: {exc}") from None
        if worker_cert is not None:
            from swayhost.ray.tls import host_tls  # cryptography, only when TLS is needed

            self._tls_config = host_tls(worker_cert)
        self.handshake = Handshake(CORE_PROTOCOL_VERSION, PROTOCOL_VERSION, "tcp", address)
        return self.handshake

    def open_channel(self, options: list[tuple[str, Any]]) -> grpc.Channel:
        assert self.handshake is not None, "start() first"
        return token_channel(
            self.handshake.address, self._token, tls=self._tls_config, options=options
        )

    # -- status, from the actor ------------------------------------------------

    def alive(self) -> bool:
        with self._lock:
            if self._exit is not None:
                return False
            if time.monotonic() - self._checked_at < ALIVE_CHECK_S:
                return True
        try:
            code = self._ask(self._actor.exit_code.remote(), CONTROL_TIMEOUT_S)
        except GetTimeoutError:
            return True  # a busy actor is not a dead one; the call's own deadline decides
        except RayError:
            self._record_exit(None, "the death of its Ray actor", [])
            return False
        if code is not None:
            self._record_exit(code, *self._exit_details())
            return False
        with self._lock:
            self._checked_at = time.monotonic()
        return True

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() >= deadline:
                return False
            with self._lock:
                self._checked_at = 0.0
            time.sleep(0.05)
        return True

    def reap(self, timeout: float) -> int | None:
        self.wait(timeout)
        return self._exit[0] if self._exit is not None else None

    def describe_exit(self) -> str:
        if self._exit is not None:
            return self._exit[1]
        return "no exit (still running)"

    def stderr_tail(self, lines: int = 20) -> list[str]:
        if self._exit is not None:
            return self._exit[2][-lines:]
        try:
            tail: list[str] = self._ask(self._actor.stderr_tail.remote(lines), CONTROL_TIMEOUT_S)
        except RayError:
            return []
        return tail

    def stderr_excerpt(self, lines: int = 20) -> str:
        return excerpt(self.stderr_tail(lines))

    # -- stop --------------------------------------------------------------

    def kill(self) -> None:
        with contextlib.suppress(RayError):
            self._ask(self._actor.kill_worker.remote(), CONTROL_TIMEOUT_S)
        self._release()

    def _release(self) -> None:
        """Let go of the actor once its worker is gone; a pool's actor stays for the next spec."""

    # -- helpers -------------------------------------------------------------

    def _exit_details(self) -> tuple[str, list[str]]:
        try:
            described = self._ask(self._actor.describe_exit.remote(), CONTROL_TIMEOUT_S)
            tail = self._ask(self._actor.stderr_tail.remote(40), CONTROL_TIMEOUT_S)
        except RayError:
            return "the death of its Ray actor", []
        return str(described), list(tail)

    def _record_exit(self, code: int | None, described: str, tail: list[str]) -> None:
        with self._lock:
            if self._exit is None:
                self._exit = (code, described, tail)

    @staticmethod
    def _ask(ref: Any, timeout: float) -> Any:
        return ray.get(ref, timeout=timeout)


class OwnedRayEndpoint(RayEndpoint):
    """The worker of an actor placed for it alone: stopping the worker also ends the actor."""

    def terminate(self, grace: float = 2.0) -> None:
        """SIGTERM the worker (SIGKILL after ``grace`` s), then end the actor."""
        with contextlib.suppress(RayError):  # a dead actor took its worker with it
            self._ask(self._actor.stop_worker.remote(grace), grace + CONTROL_TIMEOUT_S)
        self._release()

    def _release(self) -> None:
        ray.kill(self._actor)


def _this_node() -> str:
    return str(ray.get_runtime_context().get_node_id())


def _host_cert() -> bytes:
    from swayhost.ray.tls import host_identity  # cryptography, only when TLS is needed

    return host_identity().cert_pem
