"""The contract: generated stubs are fresh, handshake lines parse strictly."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from swayworker.protocol import Handshake, HandshakeError, parse_handshake

ROOT = Path(__file__).resolve().parent.parent


def _protogen() -> object:
    spec = importlib.util.spec_from_file_location("protogen", ROOT / "tools" / "protogen.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["protogen"] = module
    spec.loader.exec_module(module)
    return module


def test_generated_stubs_are_not_stale(tmp_path: Path) -> None:
    protogen = _protogen()
    written = protogen.generate(tmp_path)  # type: ignore[attr-defined]
    assert written, "protoc wrote nothing"
    for fresh in written:
        committed = ROOT / "workers" / fresh.relative_to(tmp_path)
        assert committed.exists(), f"{committed} is missing: run `make proto`"
        assert committed.read_bytes() == fresh.read_bytes(), (
            f"{committed.relative_to(ROOT)} is stale: run `make proto` and commit the result"
        )


def test_handshake_round_trip() -> None:
    line = Handshake(1, 1, "unix", "/tmp/swayworker-x/worker.sock").format()
    assert line == "1|1|unix|/tmp/swayworker-x/worker.sock|grpc"
    parsed = parse_handshake(line + "\n")
    assert parsed.grpc_target == "unix:/tmp/swayworker-x/worker.sock"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("hello", "5 fields"),
        ("2|1|unix|/s|grpc", "handshake version 2 is not supported"),
        ("1|7|unix|/s|grpc", "contract version 7 is not supported"),
        ("1|1|udp|/s|grpc", "network must be 'unix' or 'tcp'"),
        ("1|1|unix|/s|netrpc", "protocol must be 'grpc'"),
        ("1|1|tcp|10.1.2.3:5000|grpc", "loopback only"),
        ("1|1|unix||grpc", "address field is empty"),
        ("a|1|unix|/s|grpc", "versions must be integers"),
    ],
)
def test_bad_handshakes(line: str, message: str) -> None:
    with pytest.raises(HandshakeError, match=message):
        parse_handshake(line)


def test_tcp_loopback_is_accepted() -> None:
    assert parse_handshake("1|1|tcp|127.0.0.1:5000|grpc").grpc_target == "127.0.0.1:5000"
