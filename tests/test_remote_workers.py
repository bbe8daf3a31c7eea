"""A worker served as a separate service on loopback, with mutual TLS and a bearer token.

``swayhost worker serve`` runs in its own process group, as it would on a GPU
server; the host attaches to it by address, runs a differential evaluation
and gets the numbers a local worker gives. Then every way in is tried and
refused with a clear error: wrong token, no token, a client certificate from
another CA, no client certificate, an expired certificate on either side,
plaintext against the TLS port. And nothing listens off loopback unless
asked to: a default worker has no network socket at all.
"""

from __future__ import annotations

import datetime
import os
import select
import stat
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import grpc
import psutil
import pytest
import swayhost
from grpc_health.v1 import health_pb2, health_pb2_grpc
from swayhost import certs
from swayhost.attached import refusal
from swayworker.hf.tiny import TinyModel

from tests.evaluation import differential_report, same_report
from tests.helpers import listens_on_loopback_only, spawn_dummy, wait_until

STARTUP_S = 120.0
SWAYHOST = [sys.executable, "-m", "swayhost"]


@dataclass
class Service:
    """A running ``swayhost worker serve`` and where its log goes."""

    address: str
    process: subprocess.Popen[bytes]
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@contextmanager
def serve(folder: Path, name: str, *args: str, listen: str = "127.0.0.1:0") -> Iterator[Service]:
    """Run ``swayhost worker serve --listen LISTEN ARGS`` until the block ends."""
    log = folder / f"{name}.log"
    empty_config = folder / "empty-config.yaml"
    empty_config.touch()
    env = {**os.environ, "SWAYHOST_CONFIG": str(empty_config)}  # the defaults, whatever ~ holds
    command = [*SWAYHOST, "worker", "serve", "--listen", listen]
    with log.open("wb") as stderr:
        process = subprocess.Popen(
            [*command, *args], stdout=subprocess.PIPE, stderr=stderr, env=env
        )
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], STARTUP_S)
        line = process.stdout.readline().decode() if ready else ""
        assert line.startswith("1|1|tcp|127.0.0.1:"), f"no handshake: {line!r}\n{log.read_text()}"
        yield Service(line.split("|")[3], process, log)
    finally:
        process.terminate()
        process.wait(30)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The team's CA and certificates, a rogue CA's client, and expired certificates."""
    folder = tmp_path_factory.mktemp("pki")
    certs.init(folder / "team", clients=["alice"])
    certs.init(folder / "rogue", clients=["mallory"])
    long_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)
    certs.issue(folder / "team", "late", days=2, not_before=long_ago)
    certs.issue(folder / "team", "stale-server", server=True, days=2, not_before=long_ago)
    return folder


def _tls_args(team: Path, server: str = "server") -> list[str]:
    return [
        "--tls-cert",
        str(team / f"{server}.crt"),
        "--tls-key",
        str(team / f"{server}.key"),
        "--tls-client-ca",
        str(team / "ca.crt"),
        "--token-file",
        str(team / "token"),
    ]


@pytest.fixture(scope="module")
def dummy_service(pki: Path) -> Iterator[Service]:
    with serve(pki, "dummy", "--kind", "dummy", "--base", "toy", *_tls_args(pki / "team")) as s:
        yield s


def _alice(pki: Path) -> swayhost.TLSConfig:
    return swayhost.TLSConfig.from_dir(pki / "team", "alice")


def _token(pki: Path) -> str:
    return swayhost.read_token(pki / "team" / "token")


# -- it works ---------------------------------------------------------------


def test_attached_service_gives_a_local_workers_numbers(pki: Path, dummy_service: Service) -> None:
    with swayhost.attach(dummy_service.address, tls=_alice(pki), token=_token(pki)) as remote:
        assert remote.pid == dummy_service.process.pid
        assert remote.spec.kind == "dummy" and remote.spec.base == "toy"
        assert "ScalableDifferentialBackend" in remote.__sway_protocols__
        got = differential_report(remote)
    with spawn_dummy() as local:
        want = differential_report(local)
    assert same_report(got, want)
    assert dummy_service.process.poll() is None, "closing an attached backend stopped the service"


def test_a_restarted_service_is_reconnected_and_the_call_retried(pki: Path) -> None:
    args = ["--kind", "dummy", "--base", "toy", *_tls_args(pki / "team")]
    # Patient enough to outlast a service restart; no cache, so calls go out.
    patient = swayhost.RecoveryPolicy(backoff_initial_s=0.2, backoff_max_s=1.0)
    worker = swayhost.WorkerOptions(recovery=patient, cache_bytes=0)
    with serve(pki, "first", *args) as first:
        backend = swayhost.attach(first.address, tls=_alice(pki), token=_token(pki), worker=worker)
        want = differential_report(backend)
    with backend, ThreadPoolExecutor(1) as pool:
        pending = pool.submit(differential_report, backend)  # finds nobody listening
        wait_until(lambda: backend.stats().crashes >= 1)
        with serve(pki, "second", *args, listen=first.address) as second:
            assert same_report(pending.result(timeout=60), want)
            assert backend.stats().restarts >= 1
            assert backend.pid == second.process.pid


@pytest.mark.slow
def test_hf_service_on_the_tiny_model_matches_a_local_hf_worker(
    pki: Path, tiny_model: TinyModel
) -> None:
    model = ["--base", str(tiny_model.base_dir), "--adapter", str(tiny_model.adapter_dir)]
    args = ["--kind", "hf", *model, "--dtype", "fp32", "--device", "cpu"]
    with (
        serve(pki, "hf", *args, *_tls_args(pki / "team")) as service,
        swayhost.attach(service.address, tls=_alice(pki), token=_token(pki)) as remote,
    ):
        assert remote.spec.adapter == tiny_model.adapter_dir
        got = differential_report(remote)
        assert got["base"] != got["ft"], "the adapter should move the model"
    spec = swayhost.ModelSpec(
        kind="hf",
        base=str(tiny_model.base_dir),
        adapter=tiny_model.adapter_dir,
        dtype="fp32",
        device="cpu",
    )
    with swayhost.build(spec) as local:
        want = differential_report(local)
    assert same_report(got, want)


# -- every refusal, with its message ------------------------------------------


def test_wrong_token_is_refused(pki: Path, dummy_service: Service) -> None:
    with pytest.raises(swayhost.AttachError, match="refused this host's bearer token"):
        swayhost.attach(dummy_service.address, tls=_alice(pki), token="not-the-token-0123456789")
    assert "the bearer token is not this worker's token" in dummy_service.log_text()


def test_missing_token_is_refused(pki: Path, dummy_service: Service) -> None:
    with pytest.raises(swayhost.AttachError, match="requires a bearer token and the call had none"):
        swayhost.attach(dummy_service.address, tls=_alice(pki))


def test_client_certificate_from_another_ca_is_refused(pki: Path, dummy_service: Service) -> None:
    rogue = pki / "rogue"
    tls = swayhost.TLSConfig(pki / "team" / "ca.crt", rogue / "mallory.crt", rogue / "mallory.key")
    with pytest.raises(swayhost.AttachError, match="does not accept this host's client cert"):
        swayhost.attach(dummy_service.address, tls=tls, token=_token(pki), connect_timeout=5)
    assert "unable to get local issuer certificate" in dummy_service.log_text()


def test_no_client_certificate_is_refused(pki: Path, dummy_service: Service) -> None:
    # The host has no way to attach without a certificate; a bare gRPC client tries.
    error = _health_check(dummy_service.address, pki / "team" / "ca.crt", client=None)
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    message = str(refusal(dummy_service.address, error, tls=True))
    assert "does not accept this host's client certificate (none, expired" in message
    assert "PEER_DID_NOT_RETURN_A_CERTIFICATE" in dummy_service.log_text()


def test_expired_client_certificate_is_refused(pki: Path, dummy_service: Service) -> None:
    team = pki / "team"
    late = swayhost.TLSConfig(team / "ca.crt", team / "late.crt", team / "late.key")
    with pytest.raises(swayhost.AttachError, match=r"this host's certificate .* expired on"):
        swayhost.attach(dummy_service.address, tls=late, token=_token(pki))
    # The host checks its own certificate first; the worker refuses it too.
    error = _health_check(dummy_service.address, team / "ca.crt", client=team / "late")
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "certificate has expired" in dummy_service.log_text()


def test_expired_worker_certificate_is_refused(pki: Path) -> None:
    args = ["--kind", "dummy", "--base", "toy", *_tls_args(pki / "team", server="stale-server")]
    with (
        serve(pki, "stale", *args) as service,
        pytest.raises(swayhost.AttachError, match="the worker's certificate has expired"),
    ):
        swayhost.attach(service.address, tls=_alice(pki), token=_token(pki))


def test_worker_certificate_from_another_ca_is_refused(pki: Path, dummy_service: Service) -> None:
    team = pki / "team"
    tls = swayhost.TLSConfig(pki / "rogue" / "ca.crt", team / "alice.crt", team / "alice.key")
    with pytest.raises(swayhost.AttachError, match=r"not signed by the CA in tls\.ca"):
        swayhost.attach(dummy_service.address, tls=tls, token=_token(pki))


def test_plaintext_to_the_tls_port_is_refused(pki: Path, dummy_service: Service) -> None:
    with pytest.raises(swayhost.AttachError, match="plaintext connection: it serves TLS"):
        swayhost.attach(dummy_service.address, token=_token(pki))
    assert "WRONG_VERSION_NUMBER" in dummy_service.log_text()


def test_plaintext_off_loopback_is_refused_before_any_connection() -> None:
    with pytest.raises(swayhost.AttachError, match="without TLS: off loopback"):
        swayhost.attach("192.0.2.1:7443", token="0123456789abcdef0123")


def test_a_readable_token_file_is_refused(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("0123456789abcdef0123\n")
    token.chmod(0o644)
    with pytest.raises(swayhost.AttachError, match="readable by other users"):
        swayhost.read_token(token)


@pytest.mark.parametrize(
    ("listen", "problem"),
    [
        ("0.0.0.0:0", "refusing to listen on '0.0.0.0' without TLS"),
        ("[::]:0", "refusing to listen on '::' without TLS"),
    ],
)
def test_worker_refuses_to_listen_off_loopback_without_tls(
    pki: Path, listen: str, problem: str
) -> None:
    out = _serve_and_exit(listen, pki / "team" / "token")
    assert out.returncode == 2, out.stderr
    assert problem in out.stderr and "swayhost certs init" in out.stderr
    assert out.stdout == "", "it must not print a handshake"


def test_worker_refuses_tcp_without_a_real_token(pki: Path) -> None:
    weak = pki / "weak-token"
    weak.write_text("short\n")
    weak.chmod(0o600)
    out = _serve_and_exit("127.0.0.1:0", weak)
    assert out.returncode == 2 and "needs a bearer token of at least 16" in out.stderr


# -- nothing listens off loopback by default ----------------------------------


def test_a_default_worker_has_no_network_socket_only_a_private_unix_one() -> None:
    with spawn_dummy() as backend:
        worker = psutil.Process(backend.pid)
        assert worker.net_connections(kind="inet") == []
        handshake = backend._conn.endpoint.handshake
        assert handshake is not None and handshake.network == "unix"
        socket = Path(handshake.address)
        assert stat.S_IMODE(socket.stat().st_mode) == 0o600
        assert stat.S_IMODE(socket.parent.stat().st_mode) == 0o700


def test_a_served_worker_listens_on_loopback_only(dummy_service: Service) -> None:
    assert listens_on_loopback_only(dummy_service.process.pid)


def _serve_and_exit(listen: str, token: Path) -> subprocess.CompletedProcess[str]:
    """``swayhost worker serve`` of a dummy that is expected to refuse to start."""
    return subprocess.run(
        [
            *SWAYHOST,
            "worker",
            "serve",
            "--listen",
            listen,
            "--kind",
            "dummy",
            "--token-file",
            token,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _health_check(address: str, ca: Path, client: Path | None) -> grpc.RpcError:
    """The error a bare gRPC client gets (with or without a client certificate)."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes(),
        private_key=client.with_suffix(".key").read_bytes() if client else None,
        certificate_chain=client.with_suffix(".crt").read_bytes() if client else None,
    )
    with grpc.secure_channel(address, credentials) as channel:
        try:
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
        except grpc.RpcError as exc:
            return exc
    raise AssertionError("the worker answered a client it should have refused")
