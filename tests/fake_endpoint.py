"""A fake worker for unit tests of the host's machinery (go-plugin's ``testing.go``, in spirit).

``FakeLauncher`` hands the ``Supervisor`` endpoints whose "worker" is a gRPC
server in this very process, on a private Unix socket: no process starts,
no framework loads, so a test of restart, retry or poison decisions runs in
milliseconds. A ``Script`` shared by all of a launcher's workers decides what
a prompt does: answer, crash the worker (it stops serving and "exits" with
``-9``, as a SIGKILLed process would) or hang until killed.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from swayplugin.v1 import backend_pb2 as pb
from swayplugin.v1 import backend_pb2_grpc as pb_grpc
from swayworker.protocol import (
    CORE_PROTOCOL_VERSION,
    HEALTH_SERVICE,
    PROTOCOL_VERSION,
    Handshake,
)

Action = str
"""What a prompt does to the worker serving it: "answer", "crash" or "hang"."""


@dataclass
class Script:
    """How the fake workers treat each prompt, and what they saw."""

    crash_always: set[str] = field(default_factory=set)
    crash_once: set[str] = field(default_factory=set)
    hang_once: set[str] = field(default_factory=set)
    seen: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def action(self, prompt: str) -> Action:
        with self.lock:
            self.seen.append(prompt)
            if prompt in self.crash_always:
                return "crash"
            if prompt in self.crash_once:
                self.crash_once.discard(prompt)
                return "crash"
            if prompt in self.hang_once:
                self.hang_once.discard(prompt)
                return "hang"
        return "answer"


def answer(prompt: str) -> float:
    """The fake model's logprob for a prompt: its length, negated."""
    return -float(len(prompt))


class _Servicer(pb_grpc.DifferentialBackendServicer):
    def __init__(self, endpoint: FakeEndpoint) -> None:
        self._endpoint = endpoint

    def Describe(self, request: Any, context: Any) -> pb.DescribeResponse:
        return self._endpoint.description()

    def Load(self, request: Any, context: Any) -> pb.LoadResponse:
        return pb.LoadResponse(description=self._endpoint.description())

    def Score(self, request: pb.ScoreRequest, context: Any) -> pb.ScoreResponse:
        return self._score(request, context)

    def ScoreBatch(self, request: pb.ScoreBatchRequest, context: Any) -> pb.ScoreBatchResponse:
        items = [pb.ScoreBatchItem(result=self._score(r, context)) for r in request.requests]
        return pb.ScoreBatchResponse(items=items)

    def Shutdown(self, request: Any, context: Any) -> pb.ShutdownResponse:
        self._endpoint.exit(0)
        return pb.ShutdownResponse()

    def _score(self, request: pb.ScoreRequest, context: Any) -> pb.ScoreResponse:
        prompt = request.logprob_of.prompt
        action = self._endpoint.script.action(prompt)
        if action == "crash":
            self._endpoint.exit(-9)
            context.abort(grpc.StatusCode.UNAVAILABLE, "the worker went away")
        if action == "hang":
            self._endpoint.ended.wait()
            context.abort(grpc.StatusCode.UNAVAILABLE, "the worker went away")
        return pb.ScoreResponse(logprob=answer(prompt))


class FakeEndpoint:
    """One fake worker: an in-process gRPC server that can crash, hang and be killed."""

    def __init__(self, script: Script, *, name: str = "fake", identity: str = "fake:1") -> None:
        self.name = name
        self.startup_timeout = 5.0
        self.handshake: Handshake | None = None
        self.script = script
        self.identity = identity
        self.ended = threading.Event()
        self.returncode: int | None = None
        self._folder = tempfile.TemporaryDirectory(prefix="swayhost-fake-")
        self._server: grpc.Server | None = None

    def description(self) -> pb.DescribeResponse:
        return pb.DescribeResponse(
            protocol_version=PROTOCOL_VERSION,
            worker_kind="fake",
            capabilities=pb.Capabilities(differential=True, logprob_of=True, batch=True),
            limits=pb.Limits(max_batch=8, max_message_bytes=4 << 20),
            model=pb.ModelInfo(loaded=True, cache_identity=self.identity),
        )

    @property
    def pid(self) -> int:
        return 4242

    def start(self) -> Handshake:
        address = str(Path(self._folder.name) / "worker.sock")
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        pb_grpc.add_DifferentialBackendServicer_to_server(_Servicer(self), server)
        health_servicer = health.HealthServicer()
        health_servicer.set(HEALTH_SERVICE, health_pb2.HealthCheckResponse.SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
        server.add_insecure_port(f"unix:{address}")
        server.start()
        self._server = server
        self.handshake = Handshake(CORE_PROTOCOL_VERSION, PROTOCOL_VERSION, "unix", address)
        return self.handshake

    def open_channel(self, options: list[tuple[str, Any]]) -> grpc.Channel:
        assert self.handshake is not None
        return grpc.insecure_channel(self.handshake.grpc_target, options=options)

    def exit(self, code: int) -> None:
        """The worker ends with ``code``: it stops serving at once."""
        if self.returncode is None:
            self.returncode = code
        self.ended.set()
        if self._server is not None:
            self._server.stop(0)

    def alive(self) -> bool:
        return not self.ended.is_set()

    def wait(self, timeout: float) -> bool:
        return self.ended.wait(timeout)

    def reap(self, timeout: float) -> int | None:
        self.wait(timeout)
        return self.returncode

    def kill(self) -> None:
        self.exit(-9)

    def terminate(self, grace: float = 2.0) -> None:
        self.exit(-15)
        self._folder.cleanup()

    def describe_exit(self) -> str:
        return f"code {self.returncode}"

    def stderr_tail(self, lines: int = 20) -> list[str]:
        return []

    def stderr_excerpt(self, lines: int = 20) -> str:
        return ""


@dataclass
class FakeLauncher:
    """Hands out a new ``FakeEndpoint`` per worker the supervisor starts; keeps them all."""

    script: Script = field(default_factory=Script)
    identity: Callable[[int], str] = lambda _: "fake:1"
    started: list[FakeEndpoint] = field(default_factory=list)

    def endpoint(self) -> FakeEndpoint:
        endpoint = FakeEndpoint(self.script, identity=self.identity(len(self.started)))
        self.started.append(endpoint)
        return endpoint
