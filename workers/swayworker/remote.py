"""Serving over TCP: a long-lived service or a Ray-placed worker, with mTLS and a token.

A worker spawned by a local host listens on a private Unix socket (the
default of ``serve()``). With ``SWAY_WORKER_LISTEN=HOST:PORT`` it listens
over TCP instead, under rules that make that safe:

* every call must carry ``authorization: Bearer <token>``
  (``SWAY_WORKER_TOKEN``), checked by a server interceptor: unlike a 0600
  Unix socket, a TCP port is open to every user of the machine, loopback too;
* off loopback, mutual TLS is mandatory (certificate, key and the CA that
  clients' certificates must chain to); without it the worker refuses to
  listen at all, so a typo in ``--listen`` cannot expose a model in plaintext;
* on loopback without TLS it uses gRPC's local credentials, which also turn
  away any peer that is not on this machine.

``SWAY_WORKER_LOAD`` (a ``ModelSpec`` as protobuf JSON) makes the worker load
its model before it announces itself, so a service starts warm and hosts
that attach learn what it serves from ``Describe``.
"""

from __future__ import annotations

import hmac
import logging
import ssl
import stat
from collections.abc import Callable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import json_format
from swayplugin.v1 import backend_pb2 as pb

from swayworker.protocol import (
    AUTHORIZATION_KEY,
    LISTEN_ENV,
    LOAD_ENV,
    TLS_CERT_ENV,
    TLS_CLIENT_CA_ENV,
    TLS_KEY_ENV,
    TOKEN_ENV,
    is_loopback,
    listen_address,
)

log = logging.getLogger("swayworker")

if TYPE_CHECKING:  # the stubs make these generic; the runtime classes are not subscriptable
    Handler = grpc.RpcMethodHandler[Any, Any]
    Interceptor = grpc.ServerInterceptor[Any, Any]
else:
    Interceptor = grpc.ServerInterceptor

MIN_TOKEN_CHARS = 16
"""Shorter tokens are refused: a guessable token is no check at all."""


class ListenError(ValueError):
    """The TCP settings are unsafe or unusable; the message says which and the fix."""


@dataclass(frozen=True)
class ServerTLS:
    """The worker's certificate chain and key, and the CA its clients must chain to."""

    cert: bytes
    key: bytes
    client_ca: bytes

    @classmethod
    def from_files(cls, cert: Path, key: Path, client_ca: Path) -> ServerTLS:
        """Read and check the three files: readable, key private and matching, CA loadable."""
        for label, path in (("certificate", cert), ("key", key), ("client CA", client_ca)):
            if not path.is_file():
                raise ListenError(f"TLS {label} {str(path)!r} is not a readable file")
        mode = stat.S_IMODE(key.stat().st_mode)
        if mode & 0o077:
            raise ListenError(
                f"TLS key {str(key)!r} is readable by other users (mode {mode:04o}); "
                f"run `chmod 600 {key}`"
            )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_cert_chain(cert, key)
        except ssl.SSLError as exc:
            raise ListenError(
                f"TLS certificate {str(cert)!r} and key {str(key)!r} do not load as a pair "
                f"({exc.reason or exc}); pass the key that belongs to the certificate"
            ) from None
        try:
            context.load_verify_locations(cafile=str(client_ca))
        except ssl.SSLError as exc:
            raise ListenError(
                f"TLS client CA {str(client_ca)!r} is not a PEM certificate ({exc.reason or exc})"
            ) from None
        return cls(cert.read_bytes(), key.read_bytes(), client_ca.read_bytes())

    def credentials(self) -> grpc.ServerCredentials:
        return grpc.ssl_server_credentials(
            [(self.key, self.cert)], root_certificates=self.client_ca, require_client_auth=True
        )


class TokenInterceptor(Interceptor):
    """Refuse every call, health checks included, that lacks the bearer token."""

    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Handler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        metadata = dict(handler_call_details.invocation_metadata or ())
        presented = metadata.get(AUTHORIZATION_KEY)
        if presented is None:
            return _refusal(handler, "this worker requires a bearer token and the call had none")
        value = presented.encode() if isinstance(presented, str) else bytes(presented)
        if not hmac.compare_digest(value, self._expected):
            return _refusal(handler, "the bearer token is not this worker's token")
        return handler


def _refusal(handler: Handler, problem: str) -> Handler:
    """A handler of the same shape as ``handler`` that ends the call UNAUTHENTICATED."""
    message = f"{problem}; attach with the token the worker was started with (--token-file)"

    def refuse(request: Any, context: grpc.ServicerContext) -> Any:
        log.warning("refused a call from %s: %s", context.peer(), problem)
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(refuse)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(refuse)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(refuse)
    return grpc.unary_unary_rpc_method_handler(refuse)


class TcpListener:
    """Where a worker reached over TCP listens, and how it lets callers in."""

    network = "tcp"

    def __init__(self, host: str, port: int, token: str, tls: ServerTLS | None) -> None:
        if len(token) < MIN_TOKEN_CHARS:
            raise ListenError(
                f"a worker listening on TCP needs a bearer token of at least {MIN_TOKEN_CHARS} "
                "characters (--token-file; `swayhost certs init` writes one)"
            )
        if tls is None and not is_loopback(host):
            raise ListenError(
                f"refusing to listen on {host!r} without TLS: off loopback a worker needs "
                "mutual TLS (--tls-cert, --tls-key and --tls-client-ca; `swayhost certs init "
                "DIR` makes them). Listen on 127.0.0.1 to serve this machine only."
            )
        self.host = host
        self.port = port
        self.interceptors: list[Interceptor] = [TokenInterceptor(token)]
        # gRPC sets SO_REUSEPORT by default, which would let a second process bind
        # the same port and silently take half of the calls.
        self.options: list[tuple[str, Any]] = [("grpc.so_reuseport", 0)]
        self._tls = tls

    def bind(self, server: grpc.Server) -> str:
        """Add the port to ``server``; the address clients use (the real port if 0 was asked)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        credentials = (
            self._tls.credentials()
            if self._tls is not None
            else grpc.local_server_credentials(grpc.LocalConnectionType.LOCAL_TCP)
        )
        try:
            port = server.add_secure_port(f"{host}:{self.port}", credentials)
        except RuntimeError as exc:
            raise ListenError(f"cannot listen on {host}:{self.port}: {exc}") from None
        if port == 0:
            raise ListenError(f"cannot listen on {host}:{self.port}: in use, or not local")
        security = "mutual TLS" if self._tls is not None else "loopback only, no TLS"
        log.info("listening on %s:%d (%s, bearer token required)", host, port, security)
        return f"{host}:{port}"

    def started(self) -> None:
        """Nothing to do once serving: the port's access is enforced per call."""

    def frames(self, servicer: object) -> None:
        """No framed path over TCP: it has no token check nor TLS, and is for one machine."""

    def close(self) -> None:
        """Nothing to remove: a TCP port vanishes with the server."""


def listener_from_env(environ: MutableMapping[str, str]) -> TcpListener | None:
    """The TCP listener ``environ`` asks for, or None for the default Unix socket.

    The token is removed from ``environ``, so processes the backend starts
    do not inherit it.
    """
    listen = environ.get(LISTEN_ENV)
    if not listen:
        return None
    try:
        host, port = listen_address(listen)
    except ValueError as exc:
        raise ListenError(f"{LISTEN_ENV}={exc}") from None
    token = environ.pop(TOKEN_ENV, "").strip()
    return TcpListener(host, port, token, _tls_from_env(environ))


def _tls_from_env(environ: Mapping[str, str]) -> ServerTLS | None:
    paths = {name: environ.get(name) for name in (TLS_CERT_ENV, TLS_KEY_ENV, TLS_CLIENT_CA_ENV)}
    given = [name for name, value in paths.items() if value]
    if not given:
        return None
    if len(given) != len(paths):
        missing = ", ".join(name for name in paths if name not in given)
        raise ListenError(
            f"mutual TLS needs a certificate, its key and the clients' CA; {missing} is not set "
            "(--tls-cert, --tls-key, --tls-client-ca)"
        )
    cert, key, client_ca = (Path(str(paths[name])).expanduser() for name in paths)
    return ServerTLS.from_files(cert, key, client_ca)


def spec_to_load(environ: Mapping[str, str]) -> pb.ModelSpec | None:
    """The ``ModelSpec`` to load before the handshake, if ``SWAY_WORKER_LOAD`` gives one."""
    text = environ.get(LOAD_ENV)
    if not text:
        return None
    try:
        return json_format.Parse(text, pb.ModelSpec())
    except json_format.ParseError as exc:
        raise ListenError(f"{LOAD_ENV} is not a ModelSpec in protobuf JSON: {exc}") from None


def environment(
    listen: str,
    token: str,
    *,
    tls: tuple[Path, Path, Path] | None = None,
    load: pb.ModelSpec | None = None,
) -> dict[str, str]:
    """The variables that make a worker serve over TCP: the inverse of ``listener_from_env``."""
    env = {LISTEN_ENV: listen, TOKEN_ENV: token}
    if tls is not None:
        cert, key, client_ca = tls
        env |= {TLS_CERT_ENV: str(cert), TLS_KEY_ENV: str(key), TLS_CLIENT_CA_ENV: str(client_ca)}
    if load is not None:
        env[LOAD_ENV] = json_format.MessageToJson(load, indent=None)
    return env
