"""``serve()``: run a backend as a plugin worker process.

Order matters here: check the magic cookie (a worker started by hand
explains itself and exits), bind a Unix socket in a private 0700 folder,
start gRPC with the health service, print the handshake line, then block
until Shutdown, SIGTERM/SIGINT or the host's death. On the way out the
backend is closed and the socket folder removed.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from swayplugin.v1 import backend_pb2_grpc as pb_grpc

from swayworker import lifeline
from swayworker.protocol import (
    CORE_PROTOCOL_VERSION,
    HEALTH_SERVICE,
    MAGIC_COOKIE_KEY,
    MAGIC_COOKIE_VALUE,
    MAX_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    Handshake,
)
from swayworker.servicer import BackendServicer, Loader

log = logging.getLogger("swayworker")

NOT_A_PROGRAM = (
    "This is a sway plugin worker. It is started by the sway-plugin-host "
    "(swayhost), not run by hand: the host sets {key} and talks to it over gRPC. "
    "To try a worker, use `swayhost conformance -- <this command>` or "
    "`swayhost.build(...)` from Python.\n"
)

SERVER_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]


def serve(
    backend: Any | None = None,
    *,
    loader: Loader | None = None,
    worker_kind: str = "python",
    max_workers: int = 8,
    warmup: Callable[[], None] | None = None,
) -> None:
    """Serve ``backend`` (or the one ``loader`` builds on Load) until told to stop.

    ``backend`` is any object satisfying sway's ``DifferentialBackend``
    protocol, optionally the scalable / null-calibrated / preflight ones too;
    the worker advertises exactly what it finds. ``warmup`` (e.g. importing
    the framework) runs before the handshake line, so a worker that has
    shaken hands loads at once: the host's standby worker relies on that.
    This function does not return normally: it exits the process when
    serving ends.
    """
    if backend is None and loader is None:
        raise TypeError("serve() needs a backend object or a loader")
    _configure_logging(worker_kind)
    if os.environ.get(MAGIC_COOKIE_KEY) != MAGIC_COOKIE_VALUE:
        sys.stderr.write(NOT_A_PROGRAM.format(key=MAGIC_COOKIE_KEY))
        sys.exit(1)
    faulthandler.enable()  # a segfault leaves its traceback in the host's stderr tail

    stop = threading.Event()
    socket_dir = Path(tempfile.mkdtemp(prefix="swayworker-"))  # mode 0700
    socket_path = socket_dir / "worker.sock"
    servicer = BackendServicer(
        backend=backend, loader=loader, worker_kind=worker_kind, on_shutdown=stop.set
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers), options=SERVER_OPTIONS
    )
    pb_grpc.add_DifferentialBackendServicer_to_server(servicer, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    try:
        server.add_insecure_port(f"unix:{socket_path}")
        server.start()
        os.chmod(socket_path, 0o600)
        for name in (HEALTH_SERVICE, ""):
            health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)

        def _stop(reason: str) -> None:
            log.info("stopping: %s", reason)
            stop.set()

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda s, f: _stop(f"signal {signal.Signals(s).name}"))
        lifeline.watch_parent(_stop)
        if warmup is not None:
            _warm_up(warmup, stop)
        handshake = Handshake(CORE_PROTOCOL_VERSION, PROTOCOL_VERSION, "unix", str(socket_path))
        if not stop.is_set():
            sys.stdout.write(handshake.format() + "\n")
            sys.stdout.flush()
        while not stop.wait(0.25):
            pass
        health_servicer.enter_graceful_shutdown()
        server.stop(grace=0.5).wait(1.0)
        servicer.close()
    finally:
        shutil.rmtree(socket_dir, ignore_errors=True)
    # Everything is released; skip interpreter finalisation, which for a
    # torch process can take seconds and would make the host escalate.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _warm_up(warmup: Callable[[], None], stop: threading.Event) -> None:
    """Run ``warmup`` on a thread, so the main thread still stops when the host goes away."""

    def run() -> None:
        try:
            warmup()
        except Exception as exc:  # Load reports the real problem, with its own error
            log.debug("warm-up failed: %s", exc)

    thread = threading.Thread(target=run, name="warmup", daemon=True)
    thread.start()
    while thread.is_alive() and not stop.is_set():
        thread.join(0.1)


def _configure_logging(worker_kind: str) -> None:
    """Worker logs go to stderr, which the host forwards into its logging."""
    level = os.environ.get("SWAY_WORKER_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=level, stream=sys.stderr, format=f"%(levelname)s {worker_kind}: %(message)s"
    )
