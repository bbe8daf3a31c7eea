"""TLS and bearer tokens for workers reached over TCP (attached services, Ray workers).

Kept apart from the launchers, as go-plugin keeps ``mtls.go``: both the
attached launcher and the Ray endpoints open their channels here.
Plaintext is allowed on loopback only, through gRPC's local credentials.
"""

from __future__ import annotations

import datetime
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from swayhost.errors import AttachError


@dataclass(frozen=True)
class TLSConfig:
    """Mutual TLS for attaching: the CA the worker's certificate chains to, and ours.

    ``server_name`` overrides the name checked against the worker's
    certificate, for an address that is not among the names it was issued for.
    """

    ca: Path
    cert: Path
    key: Path
    server_name: str | None = None

    def __post_init__(self) -> None:
        for name in ("ca", "cert", "key"):
            object.__setattr__(self, name, Path(getattr(self, name)).expanduser())

    @classmethod
    def from_dir(cls, directory: Path | str, client: str = "client") -> TLSConfig:
        """The files ``swayhost certs init DIR`` wrote for ``client``."""
        folder = Path(directory).expanduser()
        return cls(folder / "ca.crt", folder / f"{client}.crt", folder / f"{client}.key")

    def check(self) -> None:
        """Refuse unusable files here, with their names, rather than as a failed handshake."""
        for label, path in (("CA", self.ca), ("certificate", self.cert), ("key", self.key)):
            if not path.is_file():
                raise AttachError(f"TLS {label} {str(path)!r} is not a readable file")
        _require_private(self.key, "TLS key")
        start, end = _validity(self.cert)
        now = datetime.datetime.now(datetime.UTC)
        if end is not None and now > end:
            raise AttachError(
                f"this host's certificate {str(self.cert)!r} expired on {end:%Y-%m-%d %H:%M} UTC; "
                "issue a new one (`swayhost certs issue DIR NAME`)"
            )
        if start is not None and now < start:
            raise AttachError(
                f"this host's certificate {str(self.cert)!r} is not valid before "
                f"{start:%Y-%m-%d %H:%M} UTC; check this machine's clock"
            )

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca.read_bytes(),
            private_key=self.key.read_bytes(),
            certificate_chain=self.cert.read_bytes(),
        )


def read_token(path: Path | str) -> str:
    """The bearer token in ``path``, which must be private to its owner (like an SSH key)."""
    file = Path(path).expanduser()
    _require_private(file, "token file")
    try:
        token = file.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = "it is not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else exc.strerror
        raise AttachError(
            f"token file {str(file)!r} cannot be read: {reason}; it must hold the token as one"
            " line of text (`swayhost certs init` writes one)"
        ) from None
    if not token:
        raise AttachError(f"token file {str(file)!r} is empty")
    return token


def token_channel(
    address: str, token: str | None, *, tls: TLSConfig | None, options: list[tuple[str, Any]]
) -> grpc.Channel:
    """A channel to a TCP worker: mutual TLS (or loopback-only local credentials) + the token.

    gRPC sends call credentials (the token) only over a channel it considers
    secure; its local credentials count as such, and they also refuse to
    connect anywhere but this machine.
    """
    credentials = (
        tls.credentials()
        if tls is not None
        else grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP)
    )
    if token is not None:
        credentials = grpc.composite_channel_credentials(
            credentials, grpc.access_token_call_credentials(token)
        )
    if tls is not None and tls.server_name:
        options = [*options, ("grpc.ssl_target_name_override", tls.server_name)]
    return grpc.secure_channel(address, credentials, options=options)


def _require_private(path: Path, label: str) -> None:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        raise AttachError(
            f"{label} {str(path)!r} does not exist; check the path"
            + (" (`swayhost certs init` writes a token file)" if label == "token file" else "")
        ) from None
    if mode & 0o077:
        raise AttachError(
            f"{label} {str(path)!r} is readable by other users (mode {mode:04o}); "
            f"run `chmod 600 {path}`"
        )


def _validity(cert: Path) -> tuple[datetime.datetime | None, datetime.datetime | None]:
    """The certificate's validity window, or (None, None) without ``cryptography``."""
    try:
        from swayhost import certs  # cryptography: an optional extra
    except ImportError:  # the remote extra is not installed: the handshake will tell
        return None, None
    return certs.validity(cert)
