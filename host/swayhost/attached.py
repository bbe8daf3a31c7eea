"""Attaching to a worker that runs as a service: by address, over mutual TLS, with a token.

``swayhost worker serve`` runs a worker as a long-lived service on another
machine (a GPU server); ``attach(address, tls=..., token=...)`` connects to it
and returns the same ``RemoteBackend`` a spawned worker gives, recovery
included: a service that restarts or a network that drops is reconnected and
the calls in flight are retried. The host never signals or stops a worker it
attached to: closing the backend only disconnects.

Plaintext is allowed on loopback only. Every failure to get in is turned into
an ``AttachError`` that says which side refused what: nothing listening, the
worker's certificate (expired, wrong CA, wrong name), this host's certificate
(missing, expired, not trusted by the worker), plaintext against TLS, or the
bearer token.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import grpc
from swayplugin.v1 import backend_pb2 as pb
from swayplugin.v1 import backend_pb2_grpc as pb_grpc
from swayworker.protocol import (
    CORE_PROTOCOL_VERSION,
    PROTOCOL_VERSION,
    Handshake,
    is_loopback,
    split_address,
)

from swayhost.errors import AttachError
from swayhost.launch import launch
from swayhost.proxy import RemoteBackend
from swayhost.spec import ModelSpec, WorkerOptions
from swayhost.tls import TLSConfig, token_channel
from swayhost.translate import status_code

DEFAULT_CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class AttachedLauncher:
    """A worker service at ``address``: each endpoint reconnects to it, none starts it."""

    address: str
    name: str
    tls: TLSConfig | None = None
    token: str | None = None
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S

    def endpoint(self) -> AttachedEndpoint:
        return AttachedEndpoint(
            self.address,
            name=self.name,
            tls=self.tls,
            token=self.token,
            connect_timeout=self.connect_timeout,
        )


class AttachedEndpoint:
    """A worker somewhere else, reached by address; never started, signalled or stopped here.

    Not an ``OwnedEndpoint``: closing the connection only disconnects.
    """

    def __init__(
        self,
        address: str,
        *,
        name: str,
        tls: TLSConfig | None,
        token: str | None,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
    ) -> None:
        host, port = split_address(address)
        if not host or not port.isdigit():
            raise AttachError(f"{address!r} is not HOST:PORT (e.g. gpu-box:7443, [::1]:7443)")
        if tls is None and not is_loopback(host):
            raise AttachError(
                f"refusing to attach to {address} without TLS: off loopback, pass "
                "tls=TLSConfig(ca=..., cert=..., key=...) (`swayhost certs init` makes them)"
            )
        self.address = address
        self.name = name
        self.startup_timeout = connect_timeout
        self.handshake: Handshake | None = None
        self.description: pb.DescribeResponse | None = None
        self._tls = tls
        self._token = token
        self._dropped = False

    @property
    def pid(self) -> int:
        """The worker's pid on its own machine, as it reported it."""
        return int(self.description.runtime.pid) if self.description is not None else -1

    def start(self) -> Handshake:
        """Check that the worker lets this host in (one Describe); where it listens."""
        if self._tls is not None:
            self._tls.check()
        self.handshake = Handshake(CORE_PROTOCOL_VERSION, PROTOCOL_VERSION, "tcp", self.address)
        channel = self.open_channel([])
        try:
            stub = pb_grpc.DifferentialBackendStub(channel)
            self.description = stub.Describe(pb.DescribeRequest(), timeout=self.startup_timeout)
        except grpc.RpcError as exc:
            raise refusal(self.address, exc, tls=self._tls is not None) from None
        finally:
            channel.close()
        return self.handshake

    def open_channel(self, options: list[tuple[str, Any]]) -> grpc.Channel:
        return token_channel(self.address, self._token, tls=self._tls, options=options)

    # A remote worker's process is out of sight: it "ends" for this host when
    # the host gives up on it (kill, on a hang), and a restart reconnects.

    def alive(self) -> bool:
        return not self._dropped

    def wait(self, timeout: float) -> bool:
        return self._dropped

    def reap(self, timeout: float) -> int | None:
        return None  # its exit code is on its own machine

    def kill(self) -> None:
        self._dropped = True

    def describe_exit(self) -> str:
        return f"no exit seen (the worker runs at {self.address}; its log is on that machine)"

    def stderr_tail(self, lines: int = 20) -> list[str]:
        return []

    def stderr_excerpt(self, lines: int = 20) -> str:
        return ""


def attach(
    address: str,
    *,
    tls: TLSConfig | None = None,
    token: str | None = None,
    spec: ModelSpec | None = None,
    worker: WorkerOptions | None = None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S,
) -> RemoteBackend:
    """A backend served by the worker at ``address`` (a ``swayhost worker serve``).

    Without ``spec`` the backend is the model the worker serves (it reports
    its loaded spec); with one, the worker Loads it. ``worker`` gives the
    name, recovery policy and journal; how to start a process does not apply.
    """
    options = worker or WorkerOptions()
    name = options.name or f"remote {address}"
    options = replace(options, name=name)
    launcher = AttachedLauncher(address, name, tls, token, connect_timeout)
    if spec is None:
        probe = launcher.endpoint()
        probe.start()
        assert probe.description is not None
        spec = _served_spec(probe.description, options, where=address)
    else:
        spec = replace(spec, worker=options)
    return launch(spec, launcher)


def _served_spec(
    description: pb.DescribeResponse, worker: WorkerOptions, *, where: str
) -> ModelSpec:
    """The spec a running worker serves, from its description."""
    if description.HasField("loaded_spec"):
        return ModelSpec.from_proto(description.loaded_spec, worker)
    raise AttachError(
        f"the worker at {where} has no model loaded: start it with one "
        "(`swayhost worker serve --base ... --adapter ...`) or pass spec= to attach"
    )


def refusal(address: str, exc: grpc.RpcError, *, tls: bool) -> AttachError:
    """What went wrong getting into the worker at ``address``, and the fix."""
    code = status_code(exc)
    details = exc.details() if hasattr(exc, "details") else ""
    detail = str(details or "")
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return AttachError(f"the worker at {address} refused this host's bearer token: {detail}")
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return AttachError(f"the worker at {address} did not answer in time ({detail})")
    text = detail.lower()
    problem = next((fix for marker, fix in _TRANSPORT_FAILURES if marker in text), None)
    if problem is None and ("socket closed" in text or "connection reset" in text):
        problem = _REJECTED_BY_WORKER if tls else _PLAINTEXT_TO_TLS
    return AttachError(f"cannot reach the worker at {address}: {problem or detail}. [{detail}]")


_REJECTED_BY_WORKER = (
    "the worker ended the TLS handshake: it does not accept this host's client certificate "
    "(none, expired, or not signed by the CA it trusts with --tls-client-ca); its log says which"
)
_PLAINTEXT_TO_TLS = (
    "the worker closed a plaintext connection: it serves TLS; "
    "attach with tls=TLSConfig(ca=..., cert=..., key=...)"
)
_TRANSPORT_FAILURES = (
    ("connection refused", "nothing listens there (is `swayhost worker serve` running?)"),
    (
        "certificate has expired",
        "the worker's certificate has expired; issue it a new one (`swayhost certs issue`)",
    ),
    (
        "unable to get local issuer certificate",
        "the worker's certificate is not signed by the CA in tls.ca",
    ),
    (
        "not in peer certificate",
        "the worker's certificate does not name this address; dial a name it was issued for "
        "or set TLSConfig(server_name=...)",
    ),
    (
        "wrong_version_number",
        "the worker does not speak TLS; plaintext is only for loopback: attach without tls=",
    ),
)
"""Markers in gRPC's transport error text, each with what it means for the user."""
