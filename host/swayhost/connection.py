"""A live connection to one worker: its process, its channel, its calls.

Its own RPCs (Load) go through ``call()``; ``swayhost.translate`` turns a
failure into the exception an in-process backend would have raised, or into
``WorkerCrashedError`` (with the exit cause and the last stderr lines) when
the worker itself is gone. Scoring calls go through the ``Supervisor``.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from swayplugin.v1 import backend_pb2 as pb
from swayplugin.v1 import backend_pb2_grpc as pb_grpc
from swayworker.protocol import HEALTH_SERVICE, MAX_MESSAGE_BYTES, PROTOCOL_VERSION

from swayhost import translate
from swayhost.endpoint import OwnedEndpoint, WorkerEndpoint
from swayhost.errors import WorkerCrashedError, WorkerStartError
from swayhost.frames import FramesClient, framed_stub
from swayhost.process import WAIT_NOTICE_EVERY_S, WAIT_NOTICE_S

log = logging.getLogger("swayhost")

T = TypeVar("T")

CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]

_LIVE: weakref.WeakSet[WorkerConnection] = weakref.WeakSet()


class WorkerConnection:
    """Start a worker, connect to it, and stop it (Shutdown → SIGTERM → SIGKILL) if it owns it."""

    def __init__(self, endpoint: WorkerEndpoint) -> None:
        self.endpoint = endpoint
        self.name = endpoint.name
        self._channel: grpc.Channel | None = None
        self._stub: pb_grpc.DifferentialBackendStub | None = None
        self._health: health_pb2_grpc.HealthStub | None = None
        self._frames: FramesClient | None = None
        self._closed = False
        self._close_lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> pb.DescribeResponse:
        """Spawn, handshake, connect, health-check, Describe."""
        started = time.monotonic()
        handshake = self.endpoint.start()
        _LIVE.add(self)
        remaining = max(1.0, self.endpoint.startup_timeout - (time.monotonic() - started))
        try:
            self._channel = self.endpoint.open_channel(CHANNEL_OPTIONS)
            grpc.channel_ready_future(self._channel).result(timeout=remaining)
            self._stub = self._make_stub(self._channel, handshake.frames)
            self._health = health_pb2_grpc.HealthStub(self._channel)
            status = self._health_status(remaining)
            if status != health_pb2.HealthCheckResponse.SERVING:
                raise WorkerStartError(f"worker {self.name!r} reports health status {status}")
            description: pb.DescribeResponse = self._stub.Describe(
                pb.DescribeRequest(), timeout=remaining
            )
        except (grpc.RpcError, grpc.FutureTimeoutError) as exc:
            self.close()
            raise WorkerStartError(
                f"worker {self.name!r} printed a handshake but did not answer on "
                f"{handshake.address}: {_why_no_answer(exc, remaining)}"
                f"{self.endpoint.stderr_excerpt()}"
            ) from exc
        except WorkerStartError:
            self.close()
            raise
        if description.protocol_version != PROTOCOL_VERSION:
            self.close()
            raise WorkerStartError(
                f"worker {self.name!r} speaks contract v{description.protocol_version}, "
                f"this host v{PROTOCOL_VERSION}; upgrade the older of the two"
            )
        return description

    def _make_stub(self, channel: grpc.Channel, frames: str) -> pb_grpc.DifferentialBackendStub:
        """The worker's stub: scoring over the framed path when the worker offers one."""
        if not frames:
            return pb_grpc.DifferentialBackendStub(channel)
        log.debug("worker %s: scoring over the framed path %s", self.name, frames)
        self._frames = FramesClient(frames)
        return framed_stub(channel, self._frames)

    @property
    def transport(self) -> str:
        """How scoring calls travel: ``frames`` (the local framed path) or ``grpc``."""
        return "frames" if self._frames is not None else "grpc"

    def close(self) -> None:
        """Stop the worker and free everything; safe to call more than once."""
        with self._close_lock:
            if self._closed:
                return
            self._closed = True
        endpoint = self.endpoint
        if isinstance(endpoint, OwnedEndpoint):  # a worker this host did not start keeps running
            if self._stub is not None and endpoint.alive():
                try:
                    self._stub.Shutdown(pb.ShutdownRequest(), timeout=2.0)
                except grpc.RpcError as exc:
                    log.debug("worker %s: Shutdown RPC failed: %s", self.name, exc)
                if not endpoint.wait(3.0):
                    log.warning("worker %s did not exit after Shutdown; sending SIGTERM", self.name)
            endpoint.terminate(grace=2.0)
        if self._frames is not None:
            self._frames.close()
        if self._channel is not None:
            self._channel.close()
        _LIVE.discard(self)

    @property
    def closed(self) -> bool:
        return self._closed

    def load(
        self, spec: pb.ModelSpec, timeout: float, *, keep_resident: bool = False
    ) -> pb.DescribeResponse:
        """Load ``spec`` into the worker (beside its adapters with ``keep_resident``);
        its description once loaded.

        A Load may take long (a first download, a slow import) or hang: after
        ``WAIT_NOTICE_S`` the host says at WARNING what it waits for, and a
        Load that outlasts ``timeout`` is a ``WorkerStartError`` saying so.
        """
        request = pb.LoadRequest(spec=spec, keep_resident=keep_resident)
        response = self.call(self._load_saying_so, request, timeout=timeout)
        return response.description

    def _load_saying_so(self, request: pb.LoadRequest, timeout: float) -> pb.LoadResponse:
        what = loading(request.spec)
        started = time.monotonic()
        future = self.stub.Load.future(request, timeout=timeout)
        wait = WAIT_NOTICE_S
        try:
            while True:
                try:
                    response: pb.LoadResponse = future.result(timeout=wait)
                    return response
                except grpc.FutureTimeoutError:
                    log.warning(
                        "worker %s (pid %d) is still loading %s after %.0fs; waiting up to %gs",
                        self.name,
                        self.endpoint.pid,
                        what,
                        time.monotonic() - started,
                        timeout,
                    )
                    wait = WAIT_NOTICE_EVERY_S
        except grpc.RpcError as exc:
            if translate.status_code(exc) != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise
            raise WorkerStartError(
                f"worker {self.name!r} (pid {self.endpoint.pid}) did not finish loading {what} "
                f"within {timeout:g}s. Raise startup_timeout if the model is just slow to "
                "load; otherwise the load hangs (a download, an import)."
                f"{self.endpoint.stderr_excerpt()}"
            ) from None
        finally:
            future.cancel()  # type: ignore[no-untyped-call]  # a no-op once done

    def healthy(self, timeout: float) -> bool:
        """One health check: does the worker answer SERVING within ``timeout``?"""
        try:
            return bool(self._health_status(timeout) == health_pb2.HealthCheckResponse.SERVING)
        except (grpc.RpcError, WorkerCrashedError, ValueError):  # ValueError: channel closed
            return False

    def _health_status(self, timeout: float) -> int:
        if self._health is None or self._closed:
            raise WorkerCrashedError(f"worker {self.name!r} is closed")
        request = health_pb2.HealthCheckRequest(service=HEALTH_SERVICE)
        return int(self._health.Check(request, timeout=timeout).status)

    # -- calls -------------------------------------------------------------

    @property
    def stub(self) -> pb_grpc.DifferentialBackendStub:
        if self._stub is None or self._closed:
            raise WorkerCrashedError(f"worker {self.name!r} is closed")
        return self._stub

    def call(self, method: Callable[..., T], request: Any, timeout: float | None = None) -> T:
        """Run one RPC; a failure is raised as ``swayhost.translate`` names it."""
        try:
            return method(request, timeout=timeout)
        except grpc.RpcError as exc:
            error = translate.answered(exc, self.name) or translate.lost(
                exc, self.endpoint, self.name
            )
            raise error from None


def _close_all_at_exit() -> None:
    for connection in list(_LIVE):
        connection.close()


atexit.register(_close_all_at_exit)


def loading(spec: pb.ModelSpec) -> str:
    """What a Load loads, in words: ``custom model 'toy' (entry_point 'm:C')``."""
    entry = f" (entry_point {spec.entry_point!r})" if spec.entry_point else ""
    return f"{spec.kind} model {spec.base!r}{entry}"


def _why_no_answer(exc: grpc.RpcError | grpc.FutureTimeoutError, waited: float) -> str:
    """The reason a fresh worker did not answer, never empty (a timeout's text is)."""
    if isinstance(exc, grpc.FutureTimeoutError):
        return f"no connection within {waited:g}s"
    code = exc.code().name if hasattr(exc, "code") else "UNKNOWN"
    details = exc.details() if hasattr(exc, "details") else ""
    return f"{code}: {details}" if details else code
