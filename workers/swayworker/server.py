"""``serve()``: run a backend as a plugin worker process.

Order matters here: check the magic cookie (a worker started by hand
explains itself and exits), bind a Unix socket in a private 0700 folder,
start gRPC with the health service, print the handshake line, then block
until Shutdown, SIGTERM/SIGINT or the host's death. The host's death is
watched from the first moment (``swayworker.lifeline``), and the process is
marked as a worker (``IN_WORKER_ENV``) so it never starts workers itself. On the way out the
backend is closed and the socket folder removed.

Where the worker listens is a *listener*: the private Unix socket here, or
TCP with mutual TLS and a bearer token (``swayworker.remote``) when the
environment asks for it; everything else is the same for both.
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
from typing import Any, Protocol

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from swayplugin.v1 import backend_pb2 as pb
from swayplugin.v1 import backend_pb2_grpc as pb_grpc

from swayworker import lifeline, remote
from swayworker.frames import FramesServer
from swayworker.protocol import (
    CORE_PROTOCOL_VERSION,
    FRAMES_ENV,
    HEALTH_SERVICE,
    IN_WORKER_ENV,
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
    the framework) starts before the handshake line and runs on beside it, so
    a worker is ready in well under a second while its seconds of imports
    overlap the host's own work; Load waits for it to finish. A standby worker
    warms up while it waits, so it still loads at once when it is needed.
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
    # Marked before anything imports a user's code, so a module that builds a
    # backend when imported is refused by the host instead of starting a chain.
    os.environ[IN_WORKER_ENV] = f"{worker_kind} worker (pid {os.getpid()})"
    stop = threading.Event()
    cleanup: list[Callable[[], None]] = []

    def _stop(reason: str) -> None:
        log.info("stopping: %s", reason)
        stop.set()

    def _clean_up() -> None:
        for step in cleanup:
            step()

    # Watched from the start: a Load before the handshake may block for good.
    lifeline.watch_parent(_stop, before_exit=_clean_up)
    try:
        listener: Listener = remote.listener_from_env(os.environ) or UnixListener()
        to_load = remote.spec_to_load(os.environ)
    except remote.ListenError as exc:
        log.error("%s", exc)
        sys.exit(2)
    cleanup.append(listener.close)

    exit_code = 0
    if warmup is not None and loader is not None:
        loader = _after_warm_up(_start_warm_up(warmup), loader, stop)
    servicer = BackendServicer(
        backend=backend, loader=loader, worker_kind=worker_kind, on_shutdown=stop.set
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers),
        options=SERVER_OPTIONS + listener.options,
        interceptors=listener.interceptors,
    )
    pb_grpc.add_DifferentialBackendServicer_to_server(servicer, server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    try:
        try:
            address = listener.bind(server)
        except remote.ListenError as exc:
            log.error("%s", exc)
            sys.exit(2)
        server.start()
        listener.started()
        frames = listener.frames(servicer) if os.environ.get(FRAMES_ENV) == "1" else None

        def _on_signal(signum: int, frame: object) -> None:
            reason = f"signal {signal.Signals(signum).name}"
            lifeline.exit_soon(reason, _clean_up)  # a blocked Load or call must not outlast it
            _stop(reason)

        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, _on_signal)
        if to_load is not None and not stop.is_set() and not _load_first(servicer, to_load):
            exit_code = 1
            stop.set()
        for name in (HEALTH_SERVICE, ""):
            health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        handshake = Handshake(
            CORE_PROTOCOL_VERSION,
            PROTOCOL_VERSION,
            listener.network,
            address,
            frames=str(frames.path) if frames is not None else "",
        )
        if not stop.is_set():
            sys.stdout.write(handshake.format() + "\n")
            sys.stdout.flush()
            if lifeline.detached():
                # Nobody reads our stdout once the handshake is taken: later prints
                # (a backend's own) go to the log instead of a pipe that may be gone.
                os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
        while not stop.wait(0.25):
            pass
        health_servicer.enter_graceful_shutdown()
        if frames is not None:
            frames.close()
        server.stop(grace=0.5).wait(1.0)
        servicer.close()
    finally:
        listener.close()
    # Everything is released; skip interpreter finalisation, which for a
    # torch process can take seconds and would make the host escalate.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exit_code)


class Listener(Protocol):
    """Where a worker listens: its transport, its port, and who may call."""

    network: str
    options: list[tuple[str, Any]]
    interceptors: list[remote.Interceptor]

    def bind(self, server: grpc.Server) -> str:
        """Add the port to ``server`` (not started yet); the address for the handshake."""
        ...

    def started(self) -> None:
        """Called once the server serves."""
        ...

    def frames(self, servicer: BackendServicer) -> FramesServer | None:
        """The local framed path beside the server, if this listener offers one."""
        ...

    def close(self) -> None:
        """Remove what ``bind`` created."""
        ...


class UnixListener:
    """The default: a Unix socket, 0600, in a private 0700 folder only its owner can enter."""

    network = "unix"

    def __init__(self) -> None:
        self.options: list[tuple[str, Any]] = []
        self.interceptors: list[remote.Interceptor] = []
        self._folder = Path(tempfile.mkdtemp(prefix="swayworker-"))  # mode 0700
        self._socket = self._folder / "worker.sock"

    def bind(self, server: grpc.Server) -> str:
        server.add_insecure_port(f"unix:{self._socket}")
        return str(self._socket)

    def started(self) -> None:
        os.chmod(self._socket, 0o600)  # the socket file exists once the server runs

    def frames(self, servicer: BackendServicer) -> FramesServer:
        """The framed path's socket, beside the gRPC one in the private folder."""
        return FramesServer(
            self._folder / "frames.sock", servicer.score, servicer.score_batch, servicer.run_framed
        )

    def close(self) -> None:
        shutil.rmtree(self._folder, ignore_errors=True)


def _load_first(servicer: BackendServicer, spec: pb.ModelSpec) -> bool:
    """Load a service's model before it announces itself; False (logged) if that fails."""
    log.info("loading %s model %s before serving", spec.kind, spec.base)
    try:
        servicer.load(spec)
    except Exception as exc:
        log.error("cannot load the model to serve: %s: %s", type(exc).__name__, exc)
        return False
    return True


def _start_warm_up(warmup: Callable[[], None]) -> threading.Event:
    """Run ``warmup`` on a daemon thread; the event is set when it has finished, well or not."""
    done = threading.Event()

    def run() -> None:
        try:
            warmup()
        except Exception as exc:  # Load reports the real problem, with its own error
            log.debug("warm-up failed: %s", exc)
        finally:
            done.set()

    threading.Thread(target=run, name="warmup", daemon=True).start()
    return done


def _after_warm_up(warm: threading.Event, loader: Loader, stop: threading.Event) -> Loader:
    """``loader``, once the warm-up is over: two threads importing one framework gain nothing.

    The wait polls ``stop`` so a worker told to stop mid-import does not hold a Load open.
    """

    def load(spec: pb.ModelSpec) -> Any:
        while not warm.wait(0.1):
            if stop.is_set():
                raise RuntimeError("the worker is stopping")
        return loader(spec)

    return load


def _configure_logging(worker_kind: str) -> None:
    """Worker logs go to stderr, which the host forwards into its logging."""
    level = os.environ.get("SWAY_WORKER_LOG_LEVEL", "INFO").upper()
    logging.basicConfig(
        level=level, stream=sys.stderr, format=f"%(levelname)s {worker_kind}: %(message)s"
    )
