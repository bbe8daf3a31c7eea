"""A private certificate authority for a small team's remote workers.

Mutual TLS needs a CA both sides trust, a certificate for each worker
(naming the hosts clients dial) and one per client. ``init`` makes all of
it in one new folder, plus a bearer token; ``issue`` signs one more
certificate later (a new teammate, another GPU server). Keys are EC P-256,
written 0600 in a 0700 folder and never overwritten. Leaf certificates last
``DEFAULT_LEAF_DAYS`` (renew yearly), the CA ``DEFAULT_CA_DAYS``.

Who gets what: a worker's machine needs ``server.crt``, ``server.key``,
``ca.crt`` and ``token``; a client needs ``ca.crt``, its own ``NAME.crt`` and
``NAME.key``, and ``token``; ``ca.key`` stays with whoever issues certificates.

Uses ``cryptography`` (the ``remote`` extra), imported only by this module.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_CA_DAYS = 3650
DEFAULT_LEAF_DAYS = 397
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
"""Always in a server certificate, so a worker can be tried on its own machine first."""
CA_NAME = "ca"
SERVER_NAME = "server"
TOKEN_NAME = "token"
_BACKDATE = datetime.timedelta(minutes=5)
"""Certificates start a little in the past, so a clock slightly behind still accepts them."""


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key, as files."""

    cert: Path
    key: Path


def init(
    directory: Path,
    *,
    hosts: Sequence[str] = (),
    clients: Sequence[str] = ("client",),
    days: int = DEFAULT_LEAF_DAYS,
    ca_days: int = DEFAULT_CA_DAYS,
) -> list[Path]:
    """Make a CA, a server certificate for ``hosts`` (+ loopback), client certificates, a token.

    ``directory`` must not hold a CA yet: nothing is ever overwritten. The
    files written are returned.
    """
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if (directory / f"{CA_NAME}.key").exists():
        raise FileExistsError(
            f"{directory} already holds a CA ({CA_NAME}.key); use `swayhost certs issue` "
            "to add certificates, or pick a new folder"
        )
    now = _now()
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        _builder(_name("sway-plugin-host team CA"), ca_key, now, ca_days)
        .issuer_name(_name("sway-plugin-host team CA"))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    written = list(_write_pair(directory, CA_NAME, ca_cert, ca_key))
    server = issue(directory, SERVER_NAME, server=True, hosts=hosts, days=days)
    written += [server.cert, server.key]
    for client in clients:
        issued = issue(directory, client, days=days)
        written += [issued.cert, issued.key]
    token = directory / TOKEN_NAME
    write_new(token, (secrets.token_urlsafe(32) + "\n").encode(), 0o600)
    return [*written, token]


def issue(
    directory: Path,
    name: str,
    *,
    server: bool = False,
    hosts: Sequence[str] = (),
    days: int = DEFAULT_LEAF_DAYS,
    not_before: datetime.datetime | None = None,
) -> Issued:
    """Sign a server (``hosts`` + loopback) or client certificate with the folder's CA.

    ``not_before`` backdates it (tests make an expired certificate that way).
    """
    if not name or any(c in name for c in "/\\") or name in (CA_NAME, TOKEN_NAME):
        raise ValueError(f"{name!r} cannot name a certificate file; pick e.g. alice or gpu-box")
    ca_key = _load_key(directory / f"{CA_NAME}.key")
    ca_cert = x509.load_pem_x509_certificate((directory / f"{CA_NAME}.crt").read_bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        _builder(_name(name), key, not_before or _now(), days)
        .issuer_name(ca_cert.subject)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if server:
        builder = builder.add_extension(_alt_names([*LOOPBACK_NAMES, *hosts]), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    cert_path, key_path = _write_pair(directory, name, cert, key)
    return Issued(cert_path, key_path)


def self_signed(
    common_name: str, *, hosts: Sequence[str] = (), server: bool, days: int = 1
) -> tuple[bytes, bytes]:
    """A throwaway certificate and key (PEM), trusted by pinning the certificate itself.

    For two processes that can hand each other a certificate over a channel
    they already trust (Ray's), so neither private key ever leaves its process.
    """
    key = ec.generate_private_key(ec.SECP256R1())
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    builder = (
        _builder(_name(common_name), key, _now(), days)
        .issuer_name(_name(common_name))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if hosts:
        builder = builder.add_extension(_alt_names(hosts), critical=False)
    cert = builder.sign(key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM), _key_pem(key)


def validity(cert: Path) -> tuple[datetime.datetime, datetime.datetime]:
    """When the certificate in ``cert`` starts and stops being valid (UTC)."""
    loaded = x509.load_pem_x509_certificate(cert.read_bytes())
    return loaded.not_valid_before_utc, loaded.not_valid_after_utc


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC) - _BACKDATE


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(
    subject: x509.Name, key: ec.EllipticCurvePrivateKey, start: datetime.datetime, days: int
) -> x509.CertificateBuilder:
    if days < 1:
        raise ValueError(f"a certificate must be valid for at least 1 day, got {days}")
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _alt_names(hosts: Iterable[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):  # unique, in order
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path} is not an EC private key made by `swayhost certs init`")
    return key


def _write_pair(
    directory: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> tuple[Path, Path]:
    cert_path, key_path = directory / f"{name}.crt", directory / f"{name}.key"
    write_new(key_path, _key_pem(key), 0o600)
    write_new(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert_path, key_path


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``mode`` from the start, never readable by others; no overwrite."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        raise FileExistsError(f"{path} exists; certificates are never overwritten") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
