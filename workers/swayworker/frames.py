"""The local framed path: Score and ScoreBatch over a plain Unix socket, next to gRPC.

A gRPC unary call between two Python processes on one machine costs about
0.35-0.5 ms here (the C core's completion queue, a poller thread, a hand-off
to a handler thread, HTTP/2 framing); the same bytes over a Unix socket with a
length prefix cost about 30 µs. On a small model that is most of a call. So a
host that asks for it (``FRAMES_ENV``) gets a second socket in the worker's
private folder, named in the handshake's sixth field, where the same protobuf
messages travel as length-prefixed frames (``FrameCall`` / ``FrameReply`` in
the contract). Everything else (Describe, Load, Preflight, Shutdown, health)
stays on gRPC, and a worker that does not offer frames is reached over gRPC
for everything.

Framing: a 4-byte little-endian length, then the message. One connection
carries one call at a time, answered in order; the host opens a connection per
call in flight, and each connection has a thread here, so concurrency is the
host's to choose, as with gRPC.

A connection's thread only reads calls. It hands each one, reply included, to
``dispatch``, which for a serialised backend queues it whole on the model
thread: the reply is written from there, so a call crosses between threads
once (connection thread to model thread), where waiting for a result and
passing it back would cross twice, and each crossing is a wake-up and a
trip through the GIL (docs/performance.md).
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import struct
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path

from swayplugin.v1 import backend_pb2 as pb

from swayworker.errors import report
from swayworker.protocol import MAX_MESSAGE_BYTES

log = logging.getLogger("swayworker")

LENGTH = struct.Struct("<I")
"""The frame header: the message's length in bytes, unsigned 32-bit little-endian."""


class FrameError(ConnectionError):
    """The peer closed the connection or sent a frame that cannot be read."""


def read_frame(sock: socket.socket) -> bytes:
    """One frame's message bytes; ``FrameError`` on a closed or broken connection."""
    (size,) = LENGTH.unpack(_read_exactly(sock, LENGTH.size))
    if size > MAX_MESSAGE_BYTES:
        raise FrameError(f"frame of {size} bytes is over the {MAX_MESSAGE_BYTES}-byte limit")
    return _read_exactly(sock, size)


def write_frame(sock: socket.socket, message: bytes) -> None:
    """Send one frame (header and message in one write)."""
    sock.sendall(LENGTH.pack(len(message)) + message)


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    if size == 0:
        return b""
    buffer = bytearray(size)
    view = memoryview(buffer)
    got = 0
    while got < size:
        n = sock.recv_into(view[got:], size - got)
        if n == 0:
            raise FrameError("connection closed")
        got += n
    return bytes(buffer)


ScoreFn = Callable[[pb.ScoreRequest], pb.ScoreResponse]
ScoreBatchFn = Callable[[pb.ScoreBatchRequest], pb.ScoreBatchResponse]
DispatchFn = Callable[[Callable[[], None]], None]
"""Runs a job now or queues it (``BackendServicer.run_framed``); it returns without a result."""


class FramesServer:
    """Accepts framed connections on ``path`` and answers each call with the servicer's logic."""

    def __init__(
        self, path: Path, score: ScoreFn, score_batch: ScoreBatchFn, dispatch: DispatchFn
    ) -> None:
        self.path = path
        self._score = score
        self._score_batch = score_batch
        self._dispatch = dispatch
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(str(path))
        os.chmod(path, 0o600)
        self._listener.listen(64)
        self._closed = threading.Event()
        threading.Thread(target=self._accept, name="frames-accept", daemon=True).start()

    def close(self) -> None:
        """Stop accepting; connections in progress end with the process."""
        self._closed.set()
        with contextlib.suppress(OSError):  # not connected: nothing to shut down
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return  # closed
            threading.Thread(
                target=self._serve, args=(conn,), name="frames-conn", daemon=True
            ).start()

    def _serve(self, conn: socket.socket) -> None:
        replied = threading.Event()
        replied.set()
        try:
            while True:
                try:
                    call = pb.FrameCall.FromString(read_frame(conn))
                except (FrameError, OSError):
                    return
                except Exception as exc:  # not a FrameCall: say so, then hang up
                    log.warning("frames: unreadable call (%s); closing the connection", exc)
                    return
                replied = threading.Event()
                self._dispatch(partial(self._reply, conn, call, replied))
        finally:
            replied.wait()  # a reply still queued is written (or fails) before the socket closes
            conn.close()

    def _reply(self, conn: socket.socket, call: pb.FrameCall, replied: threading.Event) -> None:
        """Answer ``call`` and write the reply; a host that hung up is seen by the reading side."""
        try:
            write_frame(conn, self.answer(call).SerializeToString())
        except Exception as exc:  # no reply can follow: hang up, waking this connection's reader
            if not isinstance(exc, OSError):  # OSError: the host hung up first
                log.warning("frames: could not send a reply (%s); closing the connection", exc)
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        finally:
            replied.set()

    def answer(self, call: pb.FrameCall) -> pb.FrameReply:
        """The reply to one call: its result, or the error gRPC would have carried."""
        try:
            kind = call.WhichOneof("call")
            if kind == "score":
                return pb.FrameReply(score=self._score(call.score))
            if kind == "score_batch":
                return pb.FrameReply(score_batch=self._score_batch(call.score_batch))
            raise ValueError("a FrameCall must carry score or score_batch")
        except Exception as exc:
            return pb.FrameReply(error=report(exc).to_proto())
