"""``python -m bench.breakdown``: where the time of one host call goes, layer by layer.

Each row is a median of interleaved unary calls (all rows take turns, round
after round, so they see the same machine), and each layer's cost is the
difference between two rows that differ only by that layer:

- transport floors: a bare gRPC health ``Check`` to a worker, and a bare
  framed echo over a Unix socket to a process that does nothing else;
- host + worker SDK, no model: the same op on the dummy worker, whose toy
  backend costs microseconds, over gRPC and over the framed path;
- the model: the op (``next_token_dist``, top_k 64, on fresh prompts) in
  process, with dlm-sway's own HF backend on the tiny model;
- the whole: that op through the host to an HF worker, over each transport.

The figures go in ``docs/performance.md``; rerun this to check them.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path

import grpc
import swayhost
from grpc_health.v1 import health_pb2, health_pb2_grpc
from swayhost import ModelSpec, WorkerOptions
from swayworker.frames import read_frame, write_frame
from swayworker.protocol import FRAMES_ENV, HEALTH_SERVICE

from bench.models import tiny_model
from bench.sides import host_spec, sway_backend, torch_threads

ECHO = """
import socket, sys
from swayworker.frames import read_frame, write_frame
server = socket.socket(socket.AF_UNIX); server.bind(sys.argv[1]); server.listen(1)
print("ready", flush=True)
conn, _ = server.accept()
while True:
    write_frame(conn, read_frame(conn))
"""


@contextmanager
def echo_server(folder: Path) -> Iterator[socket.socket]:
    """A process that echoes frames back, and a connected client socket."""
    path = folder / "echo.sock"
    proc = subprocess.Popen(
        [sys.executable, "-c", ECHO, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        client = socket.socket(socket.AF_UNIX)
        client.connect(str(path))
        with client:
            yield client
    finally:
        proc.kill()
        proc.wait()


def dummy(frames: bool) -> swayhost.RemoteBackend:
    options = WorkerOptions(env={FRAMES_ENV: "1" if frames else "0"}, cache_bytes=0)
    return swayhost.spawn(ModelSpec(kind="dummy", base="toy", worker=options))


def hf(frames: bool, threads: int) -> swayhost.RemoteBackend:
    spec = host_spec(tiny_model(), threads)
    options = spec.worker or WorkerOptions()
    env = {**options.env, FRAMES_ENV: "1" if frames else "0"}
    return swayhost.build(replace(spec, worker=replace(options, env=env)))


def measure(rows: dict[str, Callable[[int], object]], calls: int, rounds: int) -> dict[str, float]:
    """Median µs per call of each row, the rows interleaved in blocks every round."""
    samples: dict[str, list[float]] = {name: [] for name in rows}
    counter = 0
    for _ in range(rounds):
        for name, call in rows.items():
            for _ in range(calls):
                counter += 1
                start = time.perf_counter()
                call(counter)
                samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) * 1e6 for name, values in samples.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.breakdown", description=__doc__)
    parser.add_argument("--calls", type=int, default=50, help="calls per row per round")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    warnings.filterwarnings("ignore")

    with ExitStack() as stack:
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="breakdown-")))
        echo = stack.enter_context(echo_server(folder))
        d_grpc, d_frames = (stack.enter_context(dummy(f)) for f in (False, True))
        h_grpc, h_frames = (stack.enter_context(hf(f, args.threads)) for f in (False, True))
        sway = sway_backend(tiny_model())
        stack.callback(sway.close)
        stack.enter_context(torch_threads(args.threads))
        handshake = d_grpc._conn.endpoint.handshake
        assert handshake is not None
        channel = stack.enter_context(grpc.insecure_channel(handshake.grpc_target))
        health = health_pb2_grpc.HealthStub(channel)
        check = health_pb2.HealthCheckRequest(service=HEALTH_SERVICE)
        payload = b"x" * 64

        def framed_echo(_: int) -> object:
            write_frame(echo, payload)
            return read_frame(echo)

        views = {
            name: stack.enter_context(backend.as_finetuned())
            for name, backend in (
                ("dg", d_grpc),
                ("df", d_frames),
                ("hg", h_grpc),
                ("hf", h_frames),
                ("in", sway),
            )
        }

        def op(view: str) -> Callable[[int], object]:
            return lambda i: views[view].next_token_dist(f"The river {i} ran", top_k=64)

        rows = {
            "bare gRPC health Check (transport floor, gRPC)": lambda _: health.Check(check),
            "bare framed echo (transport floor, frames)": framed_echo,
            "host → dummy worker, gRPC": op("dg"),
            "host → dummy worker, frames": op("df"),
            "in process: sway's HF backend, tiny model": op("in"),
            "host → HF worker, tiny model, gRPC": op("hg"),
            "host → HF worker, tiny model, frames": op("hf"),
        }
        medians = measure(rows, args.calls, args.rounds)
    width = max(len(name) for name in medians)
    print(
        f"median µs per call ({args.rounds} rounds × {args.calls} calls per row, interleaved;"
        f" torch threads: {args.threads or 'default'})"
    )
    for name, us in medians.items():
        print(f"  {name:<{width}}  {us:8.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
