"""Start-up and import costs: worker spawn → ready, and what ``import swayhost`` costs.

"Ready" means what the host waits for before it can use a worker: the
handshake line, the gRPC channel, a SERVING health check and a Describe
answer (``WorkerConnection.start``). Without a model that is all; with one,
``swayhost.build`` adds the Load (``bench.sides.build_host`` times that).
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import swayhost
from swayhost.connection import WorkerConnection
from swayhost.local import worker_process


@dataclass(frozen=True)
class ReadyFigures:
    seconds: tuple[float, ...]
    """spawn → ready (no model) for every worker started."""
    rss: int
    """The last worker's resident memory at ready, in bytes (framework imports still running)."""

    @property
    def median_s(self) -> float:
        return statistics.median(self.seconds)


def ready_without_model(reps: int, threads: int) -> ReadyFigures:
    """Start ``reps`` HF workers without loading anything; time each to ready."""
    import psutil

    env = {"OMP_NUM_THREADS": str(threads)} if threads > 0 else {}
    spec = swayhost.ModelSpec(
        kind="hf",
        base="unused: no Load is sent",
        adapter=Path("unused"),
        worker=swayhost.WorkerOptions(env=env),
    )
    seconds = []
    rss = 0
    for _ in range(max(1, reps)):
        start = time.perf_counter()
        connection = WorkerConnection(worker_process(spec))
        try:
            connection.start()
            seconds.append(time.perf_counter() - start)
            rss = int(psutil.Process(connection.endpoint.pid).memory_info().rss)
        finally:
            connection.close()
    return ReadyFigures(tuple(seconds), rss)


@dataclass(frozen=True)
class ImportFigures:
    wall_ms: float
    """Median wall time of ``python -c 'import swayhost'`` minus a bare interpreter."""
    importtime_ms: float
    """Cumulative ``-X importtime`` figure for ``swayhost``."""
    imports_torch: bool


def _python(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, check=True, timeout=120
    )


def _timed_python(*args: str) -> float:
    start = time.perf_counter()
    _python(*args)
    return time.perf_counter() - start


def import_figures(reps: int) -> ImportFigures:
    """Host import cost: wall time over a bare interpreter, and ``-X importtime``.

    Bare and importing interpreters alternate, and the figure is the median
    of the paired differences, so interpreter start-up noise cancels out.
    """
    diffs = []
    for _ in range(max(1, reps)):
        bare = _timed_python("-c", "pass")
        full = _timed_python("-c", "import swayhost")
        diffs.append(full - bare)
    out = _python("-X", "importtime", "-c", "import sys, swayhost; print('torch' in sys.modules)")
    cumulative_us = 0
    for line in out.stderr.splitlines():
        parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
        if len(parts) == 3 and parts[2] == "swayhost":
            cumulative_us = int(parts[1])
    return ImportFigures(
        statistics.median(diffs) * 1e3, cumulative_us / 1e3, out.stdout.strip() == "True"
    )


def machine_info() -> dict[str, str]:
    """What a reader needs to judge the figures: when, where, with what."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for dist in ("torch", "transformers", "peft", "dlm-sway", "grpcio", "protobuf"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = "missing"
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": f"{cpu} ({os.cpu_count()} logical cores)",
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": ", ".join(f"{k} {v}" for k, v in versions.items()),
    }


def load_average() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())
