"""A live connection to one worker: its process, its channel, its calls.

Every RPC goes through ``call()``, which turns a gRPC failure into the
exception an in-process backend would have raised, or into
``WorkerCrashedError`` (with the exit cause and the last stderr lines)
when the worker itself is gone.
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
from swayworker.errors import ATTRS_KEY, HINT_KEY, REASON_KEY, TYPE_KEY
from swayworker.protocol import HEALTH_SERVICE, MAX_MESSAGE_BYTES, PROTOCOL_VERSION

from swayhost.endpoint import WorkerEndpoint
from swayhost.errors import WorkerCrashedError, WorkerStartError, rebuild_exception
from swayhost.frames import FramesClient, framed_stub

log = logging.getLogger("swayhost")

T = TypeVar("T")

CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
]
GONE_CODES = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}
"""Codes of a call that got no answer because the worker or its socket went away."""

_LIVE: weakref.WeakSet[WorkerConnection] = weakref.WeakSet()


class WorkerConnection:
    """Start a worker, connect to it, and stop it (Shutdown → SIGTERM → SIGKILL)."""

    def __init__(self, process: WorkerEndpoint) -> None:
        self.process = process
        self.name = process.name
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
        handshake = self.process.start()
        _LIVE.add(self)
        remaining = max(1.0, self.process.startup_timeout - (time.monotonic() - started))
        try:
            self._channel = self.process.open_channel(CHANNEL_OPTIONS)
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
                f"{handshake.address}: {exc}{self.process.stderr_excerpt()}"
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
        if self.process.owned:  # a worker this host attached to keeps running
            if self._stub is not None and self.process.alive():
                try:
                    self._stub.Shutdown(pb.ShutdownRequest(), timeout=2.0)
                except grpc.RpcError as exc:
                    log.debug("worker %s: Shutdown RPC failed: %s", self.name, exc)
                if not self.process.wait(3.0):
                    log.warning("worker %s did not exit after Shutdown; sending SIGTERM", self.name)
            self.process.terminate(grace=2.0)
        if self._frames is not None:
            self._frames.close()
        if self._channel is not None:
            self._channel.close()
        _LIVE.discard(self)

    @property
    def closed(self) -> bool:
        return self._closed

    def load(self, spec: pb.ModelSpec, timeout: float) -> pb.DescribeResponse:
        """Load ``spec`` into the worker; its description once loaded."""
        response = self.call(self.stub.Load, pb.LoadRequest(spec=spec), timeout=timeout)
        return response.description

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
        """Run one RPC, mapping failures to the caller-facing exceptions."""
        try:
            return method(request, timeout=timeout)
        except grpc.RpcError as exc:
            raise self.translate(exc) from None

    def translate(self, exc: grpc.RpcError) -> Exception:
        """The exception a caller should see for a failed RPC."""
        answered = self.reply_error(exc)
        if answered is not None:
            return answered
        code = status_code(exc)
        if code in GONE_CODES or code == grpc.StatusCode.DEADLINE_EXCEEDED:
            self.process.wait(0.5)
            cause = (
                f"exited with {self.process.describe_exit()}"
                if not self.process.alive()
                else f"did not answer ({code.name})"
            )
            return WorkerCrashedError(
                f"worker {self.name!r} (pid {self.process.pid}) {cause} during a call."
                f"{self.process.stderr_excerpt()}"
            )
        return WorkerCrashedError(
            f"worker {self.name!r} failed a call with {code.name}: {exc.details()}"
        )

    def reply_error(self, exc: grpc.RpcError) -> Exception | None:
        """The caller's exception when the worker itself answered with an error.

        Such an answer is final (retrying gives the same error); None means
        the call failed in transport, which says nothing about the request.
        """
        raw: Any = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else ()
        metadata: dict[str, Any] = {str(k): v for k, v in raw or ()}
        if REASON_KEY not in metadata:
            return None
        return rebuild_exception(
            reason=str(metadata[REASON_KEY]),
            message=exc.details() or "",
            exception_type=str(metadata.get(TYPE_KEY, "")),
            attrs_json=str(metadata.get(ATTRS_KEY, "")),
            hint=str(metadata.get(HINT_KEY, "")),
            worker=self.name,
        )


def status_code(exc: grpc.RpcError) -> grpc.StatusCode:
    code: grpc.StatusCode = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    return code


def _close_all_at_exit() -> None:
    for connection in list(_LIVE):
        connection.close()


atexit.register(_close_all_at_exit)
