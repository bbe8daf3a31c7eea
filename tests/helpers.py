"""Shared test helpers: spawning real workers with small option sets."""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import random
import shutil
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import swayhost
from swayhost import ModelSpec, RecoveryPolicy, WorkerOptions
from swayhost.conformance.checks.lifecycle import pid_alive
from swayworker.codec import (
    Generate,
    LogprobOf,
    NextTokenDist,
    Op,
    Request,
    RollingLogprobOp,
    ViewKey,
)

from tests.plugins.node_backend import NODE_WORKER

TESTS = Path(__file__).resolve().parent
PLUGINS = TESTS / "plugins"
FAKE_WORKERS = TESTS / "fake_workers"

process_alive = pid_alive
"""Whether a pid runs, a zombie counting as gone (the conformance kit's own test)."""


def spawn_dummy(
    *,
    recovery: RecoveryPolicy | None = None,
    journal: Path | None = None,
    cache_bytes: int = 0,
    dynamic_batching: bool = True,
    **options: str,
) -> swayhost.RemoteBackend:
    """A real dummy worker process, with ``options`` passed to its Load.

    The result cache is off unless asked for: recovery and journal tests
    repeat a request precisely so that it reaches the worker again.
    """
    worker = WorkerOptions(
        options=options,
        recovery=recovery or RecoveryPolicy(),
        journal=journal,
        cache_bytes=cache_bytes,
        dynamic_batching=dynamic_batching,
    )
    return swayhost.spawn(ModelSpec(kind="dummy", base="toy", worker=worker))


def plugin_pythonpath() -> str:
    """A PYTHONPATH under which a custom worker (or sway) can import tests/plugins."""
    return os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")])


def plugin_worker(**overrides: object) -> WorkerOptions:
    """Worker options whose PYTHONPATH lets a custom worker import tests/plugins."""
    env = {"PYTHONPATH": plugin_pythonpath()}
    return WorkerOptions(env=env, **overrides)  # type: ignore[arg-type]


def fake_worker(script: str, **overrides: object) -> WorkerOptions:
    """Run one of tests/fake_workers/*.py as the worker command."""
    return WorkerOptions(
        command=(sys.executable, str(FAKE_WORKERS / script)),
        **overrides,  # type: ignore[arg-type]
    )


FAST_RECOVERY = RecoveryPolicy(backoff_initial_s=0.01, backoff_max_s=0.05)
"""The default recovery policy with near-zero backoff, so tests do not wait."""


def same_result(got: Any, want: Any) -> bool:
    """Bit-for-bit equality of two scoring results (float, str, RollingLogprob, TokenDist)."""
    if type(got) is not type(want):
        return False
    if isinstance(want, np.ndarray):
        return bool(got.dtype == want.dtype and got.tobytes() == want.tobytes())
    if isinstance(want, float):
        return struct.pack("<d", got) == struct.pack("<d", want)
    if dataclasses.is_dataclass(want):
        return all(
            same_result(getattr(got, f.name), getattr(want, f.name))
            for f in dataclasses.fields(want)
        )
    return bool(got == want)


def wait_until(condition: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"condition not met within {timeout:g}s"
        time.sleep(0.02)


WORDS = ["the", "river", "ran", "past", "old", "mill", "and", "walked", "by", "bank"]
VIEWS = [ViewKey.base(), ViewKey.ft(), ViewKey.scaled(0.5), ViewKey.null(3)]


def workload(n: int, seed: int = 0) -> list[Request]:
    """``n`` distinct small scoring requests (every view, every operation), reproducibly."""
    rng = random.Random(seed)
    requests: dict[Request, None] = {}
    while len(requests) < n:
        prompt = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4)))
        completion = " " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 3)))
        i = len(requests)
        op: Op
        if i % 25 == 24:
            op = Generate(prompt, 2)
        else:
            op = [
                LogprobOf(prompt, completion),
                RollingLogprobOp(prompt + completion),
                NextTokenDist(prompt, 8),
            ][i % 3]
        requests[Request(rng.choice(VIEWS), op)] = None
    return list(requests)


def require_node() -> None:
    """Skip without Node (CI has it); fail, with the fix, without the Node worker's packages."""
    if shutil.which("node") is None:
        pytest.skip("node is not on PATH")
    if not (NODE_WORKER.parent / "node_modules" / "@grpc" / "grpc-js").is_dir():
        pytest.fail("the Node worker's packages are missing: run `make node-worker`")


def listens_on_loopback_only(pid: int) -> bool:
    """Whether every listening inet socket of ``pid`` is on loopback (and it has at least one).

    gRPC binds IPv4 loopback as ``::ffff:127.0.0.1`` on a dual-stack socket;
    that counts as loopback too.
    """
    listening = [
        c.laddr.ip
        for c in psutil.Process(pid).net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    ]
    addresses = [ipaddress.ip_address(ip) for ip in listening]
    return bool(addresses) and all(
        (getattr(a, "ipv4_mapped", None) or a).is_loopback for a in addresses
    )
