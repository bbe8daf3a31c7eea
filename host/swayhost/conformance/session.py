"""The worker under test, reached below the proxy.

The kit must send requests no well-behaved client would (a request without a
view, ``top_k = 0``) and read the raw status code and trailing metadata of
the answer, which the proxy would already have turned into an exception.
So it starts the worker exactly as ``swayhost.spawn`` does (same process
and connection classes: cookie, handshake, health, Describe) and then calls
the generated stubs directly: every call returns the response message or
an ``RpcFailure`` describing the status the worker sent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from swayplugin.v1 import backend_pb2 as pb
from swayworker.codec import Op, Request, ViewKey, request_to_proto
from swayworker.errors import REASON_KEY

from swayhost.connection import CHANNEL_OPTIONS, WorkerConnection
from swayhost.local import worker_process
from swayhost.process import WorkerProcess
from swayhost.spec import ModelSpec

CALL_TIMEOUT = 60.0
"""Seconds one RPC may take; generous, as a first forward pass can be slow."""


SHOWN_CHARS = 300
"""The most characters of a worker's error message a report shows."""


class Excerpts:
    """Shows each long worker message once per run: cut the first time, referred to after.

    A worker that fails every request with the same long message (a wrong
    limit, a stack trace) would otherwise repeat it in every problem of
    every check; the runner says which check is running.
    """

    def __init__(self) -> None:
        self.check = ""
        self._first: dict[str, str] = {}

    def render(self, details: str) -> str:
        if len(details) <= SHOWN_CHARS:
            return details
        where = self._first.get(details)
        if where is None:
            self._first[details] = self.check
            return cut(details)
        place = "above" if where == self.check else f"in {where!r}"
        return f"[the same {len(details)}-character message as {place}]"


def cut(details: str) -> str:
    """``details`` shortened to ``SHOWN_CHARS``, saying how much was left out."""
    if len(details) <= SHOWN_CHARS:
        return details
    return f"{details[:SHOWN_CHARS]}… [{len(details) - SHOWN_CHARS} more characters]"


@dataclass(frozen=True, slots=True)
class RpcFailure:
    """A call that ended with a non-OK gRPC status."""

    code: grpc.StatusCode
    details: str
    metadata: dict[str, str]
    excerpts: Excerpts | None = field(default=None, compare=False, repr=False)
    """How a long message is shown; without it, it is cut every time."""

    @property
    def reason(self) -> str:
        """The ``sway-error-reason`` trailing metadata value ('' when absent)."""
        return self.metadata.get(REASON_KEY, "")

    def __str__(self) -> str:
        reason = f" ({self.reason})" if self.reason else " (no sway-error-reason)"
        shown = self.excerpts.render(self.details) if self.excerpts else cut(self.details)
        return f"{self.code.name}{reason}: {shown}"


Outcome = Any
"""A response message, or an ``RpcFailure``."""


class WorkerUnderTest:
    """One worker process started through the host machinery, plus raw calls."""

    def __init__(self, spec: ModelSpec, excerpts: Excerpts | None = None) -> None:
        self.spec = spec
        self.excerpts = excerpts
        self.process: WorkerProcess = worker_process(spec)
        self.connection = WorkerConnection(self.process)
        self._health: health_pb2_grpc.HealthStub | None = None
        self._channel: grpc.Channel | None = None

    def start(self) -> pb.DescribeResponse:
        """Spawn, handshake, connect, check health 'plugin', Describe (or raise)."""
        description = self.connection.start()
        assert self.process.handshake is not None
        self._channel = grpc.insecure_channel(
            self.process.handshake.grpc_target, options=CHANNEL_OPTIONS
        )
        self._health = health_pb2_grpc.HealthStub(self._channel)
        return description

    @property
    def socket_path(self) -> Path | None:
        handshake = self.process.handshake
        if handshake is None or handshake.network != "unix":
            return None
        return Path(handshake.address)

    # -- raw calls -----------------------------------------------------------

    def rpc(self, method: str, request: Any, timeout: float = CALL_TIMEOUT) -> Outcome:
        """Call ``method`` of the contract's service; a failure comes back as a value."""
        return _invoke(getattr(self.connection.stub, method), request, timeout, self.excerpts)

    def score(self, view: ViewKey, op: Op) -> Outcome:
        return self.rpc("Score", score_request(view, op))

    def health(self, service: str) -> Outcome:
        assert self._health is not None, "start() first"
        request = health_pb2.HealthCheckRequest(service=service)
        return _invoke(self._health.Check, request, CALL_TIMEOUT, self.excerpts)

    def close(self) -> None:
        """Stop the worker the host's way (Shutdown, SIGTERM, SIGKILL); idempotent."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None
        self.connection.close()


def score_request(view: ViewKey, op: Op) -> pb.ScoreRequest:
    """The wire form of one request."""
    return request_to_proto(Request(view, op))


def _invoke(method: Any, request: Any, timeout: float, excerpts: Excerpts | None) -> Outcome:
    try:
        return method(request, timeout=timeout)
    except grpc.RpcError as exc:
        raw: Any = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
        metadata = {str(k): str(v) for k, v in raw or ()}
        code = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
        details = exc.details() if hasattr(exc, "details") else str(exc)
        return RpcFailure(code=code, details=details or "", metadata=metadata, excerpts=excerpts)
