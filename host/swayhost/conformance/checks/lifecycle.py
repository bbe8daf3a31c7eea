"""Checks of the worker's life: cookie, handshake, socket, health, Describe,
Load, Shutdown and death with its host.

These are what make a worker in any language safe to spawn: it explains
itself when run by hand, talks only over a private socket, reports what it
is, and never outlives the process that started it.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import stat
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from google.protobuf import text_format
from grpc_health.v1 import health_pb2
from swayplugin.v1 import backend_pb2 as pb
from swayworker.codec import OPS
from swayworker.protocol import MAGIC_COOKIE_KEY, PROTOCOL_VERSION

from swayhost.conformance.checks.context import Context
from swayhost.conformance.orphan_host import payload_for
from swayhost.conformance.result import CheckFailed, CheckSkipped, Problems
from swayhost.conformance.session import RpcFailure, WorkerUnderTest
from swayhost.errors import SwayHostError, WorkerStartError
from swayhost.local import worker_process

COOKIE_TIMEOUT = 30.0
"""Most seconds a worker without the cookie may take to give up."""
EXIT_GRACE = 5.0
"""Seconds a worker has to exit after Shutdown or after its host died."""
OPTIONAL_PROTOCOLS = {
    "scalable": "ScalableDifferentialBackend",
    "null_calibrated": "NullCalibratedBackend",
    "preflight": "PreflightCheckable",
}


def pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs; a zombie (exited, not yet reaped) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not Path("/proc/self/stat").exists():
        return True  # no procfs: kill(0) is all we know
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()[0]
    except OSError:
        return False  # it vanished between the two looks
    return state != "Z"


def cookie(ctx: Context) -> str:
    """Started with an empty or a wrong cookie, the worker must exit non-zero and say why."""
    problems = Problems()
    codes = []
    for what, value in (("an empty", ""), ("a wrong", "not-the-sway-cookie")):
        options = ctx.spec.worker
        worker = replace(
            options,
            env={**options.env, MAGIC_COOKIE_KEY: value},
            startup_timeout=min(options.startup_timeout, COOKIE_TIMEOUT),
        )
        process = worker_process(replace(ctx.spec, worker=worker))
        try:
            process.start()
        except WorkerStartError as exc:
            code = process.poll()
            if code in (None, -signal.SIGKILL):  # the host killed it: it hung or printed garbage
                problems.add(f"with {what} cookie it did not exit by itself: {exc}")
            elif code == 0:
                problems.add(f"with {what} cookie it exited with code 0; exit non-zero")
            elif not process.stderr_tail():
                problems.add(f"with {what} cookie it exited ({code}) without a word on stderr")
            codes.append(f"{what.split()[-1]}: {process.describe_exit()}")
            continue
        finally:
            process.kill()
        problems.add(f"with {what} cookie it printed a handshake and served; it must refuse")
    problems.raise_if_any()
    return f"refuses an empty or wrong cookie ({', '.join(codes)}) and says why on stderr"


def handshake(ctx: Context) -> str:
    """Start the worker the host's way: handshake line, connect, health 'plugin', Describe."""
    worker = WorkerUnderTest(ctx.spec, ctx.excerpts)
    try:
        ctx.started = worker.start()
    except SwayHostError as exc:
        raise CheckFailed(str(exc)) from None
    ctx.worker = worker
    assert worker.process.handshake is not None
    return f"printed {worker.process.handshake.format()!r}"


def socket_private(ctx: Context) -> str:
    """The Unix socket is 0600 inside a 0700 folder (no other user can connect)."""
    path = ctx.live.socket_path
    if path is None:
        raise CheckSkipped("the worker listens on loopback TCP, not on a Unix socket")
    problems = Problems()
    folder_mode = stat.S_IMODE(path.parent.stat().st_mode)
    socket_stat = path.stat()
    problems.expect(folder_mode == 0o700, f"the socket's folder has mode {folder_mode:o}, not 700")
    problems.expect(stat.S_ISSOCK(socket_stat.st_mode), f"{path} is not a socket")
    mode = stat.S_IMODE(socket_stat.st_mode)
    problems.expect(mode & 0o077 == 0, f"the socket has mode {mode:o}; make it 600")
    problems.raise_if_any()
    return f"{path} is {mode:o} in a {folder_mode:o} folder"


def health(ctx: Context) -> str:
    """grpc.health.v1 answers SERVING for 'plugin' and '', NOT_FOUND for other names."""
    problems = Problems()
    for service in ("plugin", ""):
        outcome = ctx.live.health(service)
        if isinstance(outcome, RpcFailure):
            problems.add(f"Check({service!r}) failed: {outcome}")
        else:
            problems.expect(
                outcome.status == health_pb2.HealthCheckResponse.SERVING,
                f"Check({service!r}) is {outcome.status}, not SERVING",
            )
    unknown = ctx.live.health("no.such.Service")
    if not (isinstance(unknown, RpcFailure) and unknown.code.name == "NOT_FOUND"):
        problems.add(f"Check('no.such.Service') answered {unknown}; expected NOT_FOUND")
    problems.raise_if_any()
    return "SERVING for 'plugin' and '', NOT_FOUND for an unknown service"


def load(ctx: Context) -> str:
    """Load the model spec; the description it returns says a model is loaded."""
    timeout = ctx.spec.worker.startup_timeout
    outcome = ctx.live.rpc("Load", pb.LoadRequest(spec=ctx.spec.to_proto()), timeout)
    if isinstance(outcome, RpcFailure):
        raise CheckFailed(f"Load failed: {outcome}")
    described = outcome.description
    if not described.model.loaded:
        raise CheckFailed("Load succeeded but its description says model.loaded = false")
    ctx.loaded = described
    model = described.model
    return f"vocab_size={model.vocab_size} device={model.device!r} dtype={model.dtype!r}"


def describe(ctx: Context) -> str:
    """Describe's fields, before and after Load, and capabilities that agree with protocols."""
    fresh = ctx.live.rpc("Describe", pb.DescribeRequest())
    if isinstance(fresh, RpcFailure):
        raise CheckFailed(f"Describe after Load failed: {fresh}")
    problems = Problems()
    assert ctx.started is not None and ctx.loaded is not None
    for when, described in (("before Load", ctx.started), ("after Load", fresh)):
        problems.extend(_identity_problems(described, ctx.live.process.pid), f"{when}: ")
    loaded = ctx.loaded
    problems.extend(_capability_problems(loaded))
    problems.expect(
        fresh.capabilities == loaded.capabilities and fresh.model == loaded.model,
        "Describe after Load disagrees with the description Load returned",
    )
    problems.expect(loaded.model.vocab_size >= 0, "model.vocab_size is negative")
    problems.raise_if_any()
    caps = loaded.capabilities
    ops = [name for name in OPS if getattr(caps, name)]
    return (
        f"{loaded.worker_kind} on {loaded.runtime.runtime}; protocols {list(caps.protocols)}; "
        f"operations {ops}"
    )


def worker_kind(ctx: Context) -> str:
    """worker_kind is the same before Load, in Load's answer and in Describe after Load."""
    fresh = ctx.live.rpc("Describe", pb.DescribeRequest())
    if isinstance(fresh, RpcFailure):
        raise CheckFailed(f"Describe after Load failed: {fresh}")
    assert ctx.started is not None and ctx.loaded is not None
    kinds = {
        "before Load": ctx.started.worker_kind,
        "in Load's answer": ctx.loaded.worker_kind,
        "after Load": fresh.worker_kind,
    }
    if len(set(kinds.values())) > 1:
        seen = ", ".join(f"{kind!r} {when}" for when, kind in kinds.items())
        raise CheckFailed(
            f"worker_kind changes: {seen}; it names the worker, not the model, so report "
            "one value from the first Describe on (the host keys its logs and records on it)"
        )
    return f"{fresh.worker_kind!r} throughout"


def loaded_spec(ctx: Context) -> str:
    """Describe after Load reports the spec it loaded in loaded_spec."""
    fresh = ctx.live.rpc("Describe", pb.DescribeRequest())
    if isinstance(fresh, RpcFailure):
        raise CheckFailed(f"Describe after Load failed: {fresh}")
    sent = ctx.spec.to_proto()
    if not fresh.HasField("loaded_spec"):
        raise CheckFailed(
            "Describe after Load has no loaded_spec; set it to the ModelSpec of the last "
            "successful Load (a host attaching to a running worker learns what it serves from it)"
        )
    if fresh.loaded_spec != sent:
        raise CheckFailed(
            f"loaded_spec is {_one_line(fresh.loaded_spec)} but Load was sent "
            f"{_one_line(sent)}; report the spec as Loaded"
        )
    return f"loaded_spec = {_one_line(sent)}"


def cache_identity(ctx: Context) -> str:
    """A second process loading the same spec reports the same cache_identity and capabilities."""
    assert ctx.loaded is not None
    _, again = ctx.second_process()
    first, second = ctx.loaded.model.cache_identity, again.model.cache_identity
    problems = Problems()
    problems.expect(
        first == second,
        f"cache_identity is {first!r} in one process and {second!r} in another; it must be "
        "the same in every process that loads the same spec (no pid, time or temp path in "
        "it): the host refuses a restarted worker whose identity changed, and caches and "
        "journals are keyed on it",
    )
    problems.expect(
        ctx.loaded.capabilities == again.capabilities,
        "the capabilities differ between two processes loading the same spec; the host "
        "refuses a restarted worker that advertises other capabilities",
    )
    problems.raise_if_any()
    shown = repr(first) if first else "'' (none: the host derives one from the spec)"
    return f"{shown} in both processes, with the same capabilities"


def _one_line(spec: pb.ModelSpec) -> str:
    text = text_format.MessageToString(spec, as_one_line=True)
    return "{" + text + "}" if text else "{} (empty)"


def _identity_problems(described: pb.DescribeResponse, pid: int) -> list[str]:
    problems = Problems()
    problems.expect(
        described.protocol_version == PROTOCOL_VERSION,
        f"protocol_version is {described.protocol_version}, expected {PROTOCOL_VERSION}",
    )
    problems.expect(bool(described.worker_kind), "worker_kind is empty")
    runtime = described.runtime
    for name in ("language", "runtime", "executable"):
        problems.expect(bool(getattr(runtime, name)), f"runtime.{name} is empty")
    problems.expect(
        runtime.pid == pid,
        f"runtime.pid is {runtime.pid} but the spawned process is {pid} (exec the worker, "
        "do not wrap it)",
    )
    problems.expect(bool(described.framework_versions), "framework_versions is empty")
    problems.expect(described.limits.max_message_bytes > 0, "limits.max_message_bytes is 0")
    return problems.messages


def _capability_problems(described: pb.DescribeResponse) -> list[str]:
    problems = Problems()
    caps = described.capabilities
    protocols = set(caps.protocols)
    problems.expect(caps.differential, "capabilities.differential is false")
    problems.expect("DifferentialBackend" in protocols, "protocols lack DifferentialBackend")
    for flag, protocol in OPTIONAL_PROTOCOLS.items():
        problems.expect(
            getattr(caps, flag) == (protocol in protocols),
            f"capabilities.{flag} is {getattr(caps, flag)} but protocols "
            f"{'list' if protocol in protocols else 'omit'} {protocol}",
        )
    problems.expect(
        any(getattr(caps, name) for name in OPS),
        "no scoring operation is advertised",
    )
    problems.expect(
        caps.concurrent_views == described.safe_for_concurrent_views,
        "capabilities.concurrent_views disagrees with safe_for_concurrent_views",
    )
    return problems.messages


def shutdown(ctx: Context) -> str:
    """The Shutdown RPC answers, then the worker exits with 0 and removes its socket."""
    worker = ctx.live
    outcome = worker.rpc("Shutdown", pb.ShutdownRequest())
    problems = Problems()
    if isinstance(outcome, RpcFailure):
        problems.add(f"Shutdown failed: {outcome}")
    started = time.monotonic()
    if not worker.process.wait(EXIT_GRACE):
        raise CheckFailed(f"still running {EXIT_GRACE:g}s after Shutdown")
    took = time.monotonic() - started
    code = worker.process.poll()
    problems.expect(code == 0, f"exited with {worker.process.describe_exit()}; expected code 0")
    path = worker.socket_path
    if path is not None:
        problems.expect(not path.parent.exists(), f"left its socket folder {path.parent} behind")
    problems.raise_if_any()
    return f"exited with code 0 {took:.2f}s after Shutdown and removed its socket"


def parent_death(ctx: Context) -> str:
    """A worker whose host is SIGKILLed exits within a few seconds and removes its socket."""
    command = [sys.executable, "-m", "swayhost.conformance.orphan_host", payload_for(ctx.spec)]
    with subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    ) as helper:
        try:
            started = _read_line(helper, ctx.spec.worker.startup_timeout + 10)
        finally:
            helper.kill()
    if "error" in started:
        raise CheckFailed(f"the helper host could not start the worker: {started['error']}")
    pid = int(started["pid"])
    folder = Path(started["address"]).parent if started["network"] == "unix" else None
    deadline = time.monotonic() + EXIT_GRACE
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)  # clean up after it, then report
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        raise CheckFailed(
            f"the worker (pid {pid}) outlived its SIGKILLed host by more than {EXIT_GRACE:g}s; "
            "exit when stdin reaches EOF or you are re-parented"
        )
    gone_after = EXIT_GRACE - (deadline - time.monotonic())
    if folder is not None and folder.exists():
        raise CheckFailed(f"the orphaned worker exited but left {folder} behind")
    return f"exited {gone_after:.2f}s after its host was SIGKILLed, leaving no socket behind"


def _read_line(helper: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    assert helper.stdout is not None
    ready, _, _ = select.select([helper.stdout], [], [], timeout)
    line = helper.stdout.readline() if ready else ""
    if not line:
        raise CheckFailed(f"the helper host printed nothing within {timeout:g}s")
    loaded: dict[str, Any] = json.loads(line)
    return loaded
