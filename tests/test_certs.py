"""``swayhost certs``: a private CA whose certificates gRPC's TLS accepts, keys kept private."""

from __future__ import annotations

import datetime
import ipaddress
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from swayhost import certs


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_init_makes_a_ca_leaf_certificates_and_a_token_with_private_keys(tmp_path: Path) -> None:
    folder = tmp_path / "pki"
    written = certs.init(folder, hosts=["gpu-box.example", "10.1.2.3"], clients=["alice", "bob"])

    names = sorted(p.name for p in written)
    pairs = [f"{stem}.{ext}" for stem in ("ca", "server", "alice", "bob") for ext in ("crt", "key")]
    assert names == sorted([*pairs, "token"])
    assert _mode(folder) == 0o700
    for path in written:
        assert _mode(path) == (0o644 if path.suffix == ".crt" else 0o600), path
    assert len((folder / "token").read_text().strip()) >= 32

    server = x509.load_pem_x509_certificate((folder / "server.crt").read_bytes())
    names_in_cert = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names_in_cert.get_values_for_type(x509.DNSName)) == {"localhost", "gpu-box.example"}
    assert set(names_in_cert.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
        ipaddress.ip_address("10.1.2.3"),
    }
    start, end = certs.validity(folder / "alice.crt")
    assert (end - start).days == certs.DEFAULT_LEAF_DAYS
    ca_start, ca_end = certs.validity(folder / "ca.crt")
    assert (ca_end - ca_start).days == certs.DEFAULT_CA_DAYS


def test_nothing_is_ever_overwritten(tmp_path: Path) -> None:
    certs.init(tmp_path / "pki")
    before = (tmp_path / "pki" / "ca.key").read_bytes()
    with pytest.raises(FileExistsError, match="already holds a CA"):
        certs.init(tmp_path / "pki")
    with pytest.raises(FileExistsError, match="never overwritten"):
        certs.issue(tmp_path / "pki", "client")
    assert (tmp_path / "pki" / "ca.key").read_bytes() == before


def test_issue_signs_with_the_folders_ca_and_can_backdate(tmp_path: Path) -> None:
    folder = tmp_path / "pki"
    certs.init(folder)
    long_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)
    late = certs.issue(folder, "late", days=2, not_before=long_ago)
    ca = x509.load_pem_x509_certificate((folder / "ca.crt").read_bytes())
    cert = x509.load_pem_x509_certificate(late.cert.read_bytes())
    cert.verify_directly_issued_by(ca)
    assert certs.validity(late.cert)[1] < datetime.datetime.now(datetime.UTC)
    with pytest.raises(ValueError, match="cannot name a certificate file"):
        certs.issue(folder, "../escape")


def test_cli_init_says_which_file_goes_where(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "swayhost", "certs", "init", tmp_path / "team", "--host", "gpu"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "worker machine:" in out.stdout and "server.key" in out.stdout
    again = subprocess.run(
        [sys.executable, "-m", "swayhost", "certs", "init", str(tmp_path / "team")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 1 and "already holds a CA" in again.stdout
