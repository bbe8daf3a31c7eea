"""Mutual TLS between a host and the workers Ray placed on other nodes, made on the spot.

A worker on another node must listen on that node's address, so the host
reaches it over the network. Rather than ship a team's certificates to every
node, both sides make a throwaway key and self-signed certificate and hand
each other only the *certificate*, through Ray: the host's goes with the
start request, the worker's comes back with its address. Each side trusts
exactly the one certificate it was handed. No private key leaves the process
that made it, no CA is involved, and the bearer token still guards every
call. Uses ``cryptography`` (the ``remote`` extra) on both sides.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from swayhost import certs
from swayhost.tls import TLSConfig


@dataclass(frozen=True)
class Identity:
    """A throwaway certificate and key, as files in a private folder."""

    folder: Path
    cert: Path
    key: Path
    cert_pem: bytes


def make_identity(common_name: str, *, hosts: tuple[str, ...] = (), server: bool) -> Identity:
    """A new identity in a new 0700 folder (removed when this process exits)."""
    folder = Path(tempfile.mkdtemp(prefix="swayhost-tls-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    cert_pem, key_pem = certs.self_signed(common_name, hosts=hosts, server=server)
    certs.write_new(folder / "self.key", key_pem, 0o600)
    certs.write_new(folder / "self.crt", cert_pem, 0o644)
    return Identity(folder, folder / "self.crt", folder / "self.key", cert_pem)


@functools.cache
def host_identity() -> Identity:
    """This host's client identity, one per process, shown to every worker it starts."""
    return make_identity("swayhost-host", server=False)


def trust(peer_cert_pem: bytes, identity: Identity) -> Path:
    """The file to trust ``peer_cert_pem`` from, beside ``identity`` (written once)."""
    digest = hashlib.sha256(peer_cert_pem).hexdigest()[:16]
    path = identity.folder / f"peer-{digest}.crt"
    if not path.exists():
        certs.write_new(path, peer_cert_pem, 0o644)
    return path


def host_tls(worker_cert_pem: bytes) -> TLSConfig:
    """How this host dials a worker that showed ``worker_cert_pem``."""
    identity = host_identity()
    return TLSConfig(ca=trust(worker_cert_pem, identity), cert=identity.cert, key=identity.key)
