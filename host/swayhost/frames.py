"""The host's end of the local framed path: Score and ScoreBatch without gRPC's per-call cost.

A local Python worker offers a second Unix socket in its handshake (see
``swayworker.frames`` and ``FrameCall`` in the contract). ``FramesStub`` is
the worker's gRPC stub with its two scoring methods sent there instead; every
other method goes to gRPC as before. A framed call fails exactly as the gRPC
call would have: with a ``grpc.RpcError`` carrying the same status code,
details and trailing metadata, so the connection's one translation of
failures into caller-facing exceptions serves both paths.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

import grpc
from swayplugin.v1 import backend_pb2 as pb
from swayplugin.v1 import backend_pb2_grpc as pb_grpc
from swayworker.errors import GRPC_CODE_OF_REASON, WireError
from swayworker.frames import FrameError, read_frame, write_frame


class FramesRpcError(grpc.RpcError):
    """A failed framed call, shaped like a failed gRPC call."""

    def __init__(
        self,
        code: grpc.StatusCode,
        details: str,
        metadata: tuple[tuple[str, str], ...] = (),
    ) -> None:
        super().__init__(f"{code.name}: {details}")
        self._code = code
        self._details = details
        self._metadata = metadata

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[Any, ...]:  # grpc's own metadatum type is private
        return self._metadata


class FramesClient:
    """Framed calls to one worker: one connection per call in flight, reused after it."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._idle: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closed = False

    def score(self, request: pb.ScoreRequest, timeout: float | None = None) -> pb.ScoreResponse:
        return self._call(pb.FrameCall(score=request), timeout).score

    def score_batch(
        self, request: pb.ScoreBatchRequest, timeout: float | None = None
    ) -> pb.ScoreBatchResponse:
        return self._call(pb.FrameCall(score_batch=request), timeout).score_batch

    def close(self) -> None:
        """Close every idle connection; calls in flight close theirs when they end."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for sock in idle:
            sock.close()

    def _call(self, call: pb.FrameCall, timeout: float | None) -> pb.FrameReply:
        sock = self._take()
        try:
            sock.settimeout(timeout)
            write_frame(sock, call.SerializeToString())
            reply = pb.FrameReply.FromString(read_frame(sock))
        except TimeoutError:
            sock.close()
            raise FramesRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded") from None
        except (FrameError, OSError) as exc:
            sock.close()
            raise FramesRpcError(
                grpc.StatusCode.UNAVAILABLE, f"framed call failed: {exc}"
            ) from None
        self._give_back(sock)
        if reply.WhichOneof("reply") == "error":
            raise _answered(reply.error)
        return reply

    def _take(self) -> socket.socket:
        with self._lock:
            if self._closed:
                raise FramesRpcError(grpc.StatusCode.CANCELLED, "the connection is closed")
            if self._idle:
                return self._idle.pop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(self.path)
        except OSError as exc:
            sock.close()
            raise FramesRpcError(
                grpc.StatusCode.UNAVAILABLE, f"cannot connect to {self.path}: {exc}"
            ) from None
        return sock

    def _give_back(self, sock: socket.socket) -> None:
        with self._lock:
            if not self._closed:
                self._idle.append(sock)
                return
        sock.close()


def _answered(error: pb.Error) -> FramesRpcError:
    """The worker's error reply as the gRPC error its Score would have ended with."""
    wire = WireError(
        reason=int(error.reason),
        message=error.message,
        exception_type=error.exception_type,
        attrs_json=error.attrs_json,
        hint=error.hint,
    )
    code = GRPC_CODE_OF_REASON.get(wire.reason, grpc.StatusCode.INTERNAL)
    return FramesRpcError(code, wire.message, wire.trailing_metadata())


def framed_stub(channel: grpc.Channel, frames: FramesClient) -> pb_grpc.DifferentialBackendStub:
    """A worker's gRPC stub whose ``Score`` and ``ScoreBatch`` go over the framed path.

    The host calls a stub's methods only as ``method(request, timeout=...)``,
    which the framed methods accept too.
    """
    stub = pb_grpc.DifferentialBackendStub(channel)
    stub.Score = frames.score  # type: ignore[assignment]
    stub.ScoreBatch = frames.score_batch  # type: ignore[assignment]
    return stub
