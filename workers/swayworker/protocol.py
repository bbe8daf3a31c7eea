"""The handshake between a host and a worker, shared by both sides.

In the spirit of HashiCorp go-plugin: the host starts a worker with a magic
cookie in its environment (so a worker run by hand explains itself instead
of hanging), and the worker prints one line on stdout telling the host how
to reach it::

    CORE_VERSION|PROTOCOL_VERSION|NETWORK|ADDRESS|grpc[|frames:PATH]

e.g. ``1|1|unix|/tmp/swayworker-x1y2/worker.sock|grpc``. Any language can
print that line, which is what makes workers in other languages possible.
The optional sixth field offers the local framed path (``FRAMES_ENV``, and
``FrameCall`` in the contract); a worker prints it only when the host asked
for it, so a host that does not know it never sees it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

CORE_PROTOCOL_VERSION = 1
"""Version of the handshake itself (this line's format)."""

PROTOCOL_VERSION = 1
"""Version of the gRPC contract in ``swayplugin.v1``."""

MAGIC_COOKIE_KEY = "SWAY_PLUGIN_MAGIC_COOKIE"
MAGIC_COOKIE_VALUE = "5f0b2a1e9c7d4e38a6b1f4c2d8e07a93"

HOST_PID_ENV = "SWAY_PLUGIN_HOST_PID"
"""The host's pid, so a worker can tell it has been orphaned."""

IN_WORKER_ENV = "SWAY_WORKER_PROCESS"
"""Set by ``serve()`` in every worker: what this worker is (and, while a custom
worker imports a user's module, which one). The host refuses to start a worker
where it is set, since a worker that starts workers starts a chain."""

HEALTH_SERVICE = "plugin"
"""Name under which workers report health, as go-plugin does."""

MAX_MESSAGE_BYTES = 256 * 1024 * 1024
"""gRPC message limit set deliberately on both sides (default is 4 MiB)."""

# A worker reached over TCP (a long-lived service, a Ray-placed worker) is
# configured through these variables, so every worker built on ``serve()``
# can run that way without a flag of its own.
LISTEN_ENV = "SWAY_WORKER_LISTEN"
"""``HOST:PORT`` to serve on over TCP instead of a private Unix socket."""
TOKEN_ENV = "SWAY_WORKER_TOKEN"
"""The bearer token every call over TCP must carry (required with ``LISTEN_ENV``)."""
TLS_CERT_ENV = "SWAY_WORKER_TLS_CERT"
TLS_KEY_ENV = "SWAY_WORKER_TLS_KEY"
TLS_CLIENT_CA_ENV = "SWAY_WORKER_TLS_CLIENT_CA"
"""The worker's certificate and key, and the CA its clients' certificates must chain to."""
LOAD_ENV = "SWAY_WORKER_LOAD"
"""A ``ModelSpec`` (protobuf JSON) to Load before the handshake: a service starts warm."""
DETACHED_ENV = "SWAY_WORKER_DETACHED"
"""``1``: the worker outlives whoever started it (no stdin or parent-death watch)."""

FRAMES_ENV = "SWAY_PLUGIN_FRAMES"
"""``1``: the host speaks the local framed path; a worker that does too offers its socket."""
FRAMES_PREFIX = "frames:"
"""How the handshake's optional sixth field starts: ``frames:<unix socket path>``."""

AUTHORIZATION_KEY = "authorization"
"""Call metadata carrying ``Bearer <token>``, as gRPC's access-token credentials send it."""


class HandshakeError(ValueError):
    """The worker's handshake line is malformed or incompatible."""


@dataclass(frozen=True, slots=True)
class Handshake:
    """A parsed handshake line."""

    core_version: int
    protocol_version: int
    network: str
    address: str
    protocol: str = "grpc"
    frames: str = ""
    """The framed path's Unix socket, when the worker offers one ("": gRPC only)."""

    def format(self) -> str:
        """The line a worker prints (without the newline)."""
        fields = [
            str(self.core_version),
            str(self.protocol_version),
            self.network,
            self.address,
            self.protocol,
        ]
        if self.frames:
            fields.append(FRAMES_PREFIX + self.frames)
        return "|".join(fields)

    @property
    def grpc_target(self) -> str:
        """The target string grpc.Channel expects."""
        return f"unix:{self.address}" if self.network == "unix" else self.address


def parse_handshake(line: str, *, loopback_only: bool = True) -> Handshake:
    """Parse and validate a handshake line; raise ``HandshakeError`` if wrong.

    A spawned worker must listen on loopback; ``loopback_only=False`` is for
    one told to listen on its node's address (with mutual TLS).
    """
    parts = line.strip().split("|")
    if len(parts) not in (5, 6):
        raise HandshakeError(
            "expected 'CORE|PROTOCOL|NETWORK|ADDRESS|grpc' (5 fields, and optionally a 6th,"
            f" 'frames:PATH'), got {line.strip()!r}"
        )
    core, proto, network, address, protocol = parts[:5]
    frames = _frames_field(parts[5]) if len(parts) == 6 else ""
    if not (core.isdigit() and proto.isdigit()):
        raise HandshakeError(f"versions must be integers, got {core!r} and {proto!r}")
    if int(core) != CORE_PROTOCOL_VERSION:
        raise HandshakeError(
            f"handshake version {core} is not supported (this host speaks "
            f"{CORE_PROTOCOL_VERSION}); upgrade the older of host and worker"
        )
    if int(proto) != PROTOCOL_VERSION:
        raise HandshakeError(
            f"contract version {proto} is not supported (this host speaks "
            f"swayplugin.v{PROTOCOL_VERSION}); upgrade the older of host and worker"
        )
    if network not in ("unix", "tcp"):
        raise HandshakeError(f"network must be 'unix' or 'tcp', got {network!r}")
    if protocol != "grpc":
        raise HandshakeError(f"protocol must be 'grpc', got {protocol!r}")
    if network == "tcp" and loopback_only and not is_loopback(split_address(address)[0]):
        raise HandshakeError(f"a spawned worker must listen on loopback only, got {address!r}")
    if not address:
        raise HandshakeError("the address field is empty")
    return Handshake(int(core), int(proto), network, address, protocol, frames)


def _frames_field(field: str) -> str:
    """The socket path of a ``frames:PATH`` field; it must be an absolute path."""
    if not field.startswith(FRAMES_PREFIX) or not field[len(FRAMES_PREFIX) :].startswith("/"):
        raise HandshakeError(
            f"the optional 6th field must be 'frames:' and an absolute socket path, got {field!r}"
        )
    return field[len(FRAMES_PREFIX) :]


def split_address(address: str) -> tuple[str, str]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as (host, port); the port may be empty."""
    host, _, port = address.rpartition(":")
    if not host:
        return address.strip("[]"), ""
    return host.strip("[]"), port


def listen_address(listen: str) -> tuple[str, int]:
    """``HOST:PORT`` to serve on, as (host, port); ``ValueError`` saying what is wrong.

    The port must be 1-65535, or 0 for "any free port" (the handshake then
    says which). gRPC takes a larger number modulo 65536 without a word, so
    ``:99999`` used to serve on 34463.
    """
    host, port = split_address(listen)
    if not host or not port.isdigit():
        raise ValueError(f"{listen!r}: expected HOST:PORT, e.g. 127.0.0.1:7443")
    if int(port) > 65535:
        raise ValueError(
            f"{listen!r}: port {int(port)} is out of range; use 1-65535 (or 0 for any free port)"
        )
    return host, int(port)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine's loopback interface only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
