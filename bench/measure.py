"""The measurements: in-process sway, host unary and host batched, side by side.

All three variants score the same texts on the same tiny model (fp32, CPU)
in one process run. The machine this runs on is small and shared, so the
design is about fairness rather than absolute numbers:

* every text is scored at most once per variant and op (sway's in-process
  LRU cache must miss; the run checks that it did);
* unary calls run in blocks that alternate between in-process and host, in
  ABBA order that flips every round, so slow drifts in machine load hit both
  sides equally; the batched call sits between the blocks of its round;
* ratios are taken per round on the same texts (paired, from per-call
  medians so that one call hit by a burst cannot decide a round), and the
  report gives their median over rounds and their range.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import swayhost

from bench.prompts import Pair, make_texts, split_pair

OPS = ("next_token_dist", "logprob_of", "rolling_logprob")
UNARY_GOAL = 1.3
"""Host unary may cost at most this multiple of an in-process call."""
BATCH_GOAL = 3.0
"""A batched item must be at least this many times cheaper than a sequential in-process call."""

Item = str | Pair


@dataclass(frozen=True)
class BenchConfig:
    """How much to measure; the defaults keep a run well under three minutes."""

    rounds: int = 8
    batch: int = 64
    """Texts per round and op: the unary calls of a round, and one ``*_many`` call."""
    block: int = 8
    """Unary calls per interleaved block."""
    top_k: int = 64
    warmup: int = 8
    startup_reps: int = 3
    import_reps: int = 5
    seed: int = 1729
    threads: int = 1
    """torch intra-op threads, the same in this process and in the worker (0: torch's default).

    One thread by default: on a small shared machine a two-thread OpenMP team
    stalls at every barrier whenever another tenant takes a core, which
    swamps the overhead being measured (and hits the two sides unequally).
    """


@dataclass(frozen=True)
class OpTiming:
    """One op's figures: medians in milliseconds, ratios as medians of per-round ratios."""

    op: str
    inproc_ms: float
    host_unary_ms: float
    host_batched_ms: float
    unary_ratio: float
    unary_ratio_range: tuple[float, float]
    batch_speedup: float
    batch_speedup_range: tuple[float, float]

    @property
    def unary_pass(self) -> bool:
        return self.unary_ratio <= UNARY_GOAL

    @property
    def batch_pass(self) -> bool:
        return self.batch_speedup >= BATCH_GOAL


@dataclass(frozen=True)
class Report:
    ops: tuple[OpTiming, ...]
    worker_startup_s: float
    """Median of ``swayhost.build`` (spawn, handshake, model load) until ready."""
    inproc_construct_s: float
    """First ``HuggingFaceDifferentialBackend`` construction in this process (cold imports)."""
    import_ms: float
    """Median wall time of ``python -c 'import swayhost'`` minus a bare interpreter."""
    importtime_ms: float
    """Cumulative ``-X importtime`` figure for ``swayhost``."""
    host_imports_torch: bool
    sway_cache_hits: int
    machine: dict[str, str]
    config: BenchConfig = field(default_factory=BenchConfig)


# -- calls --------------------------------------------------------------------


def _unary(op: str, view: Any, item: Item, top_k: int) -> object:
    if isinstance(item, tuple):
        return view.logprob_of(*item)
    if op == "rolling_logprob":
        return view.rolling_logprob(item)
    return view.next_token_dist(item, top_k=top_k)


def _many(op: str, view: Any, items: Sequence[Item], top_k: int) -> list[Any]:
    result: list[Any]
    if op == "logprob_of":
        result = view.logprob_of_many(items)
    elif op == "rolling_logprob":
        result = view.rolling_logprob_many(items)
    else:
        result = view.next_token_dist_many(items, top_k=top_k)
    if len(result) != len(items):
        raise RuntimeError(f"{op}_many returned {len(result)} results for {len(items)} items")
    return result


def _time_each(call: Callable[[Item], object], items: Sequence[Item]) -> list[float]:
    times = []
    for item in items:
        start = time.perf_counter()
        call(item)
        times.append(time.perf_counter() - start)
    return times


def _timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


# -- scoring, side by side ------------------------------------------------------


@dataclass
class _Samples:
    inproc_calls: list[float] = field(default_factory=list)
    host_calls: list[float] = field(default_factory=list)
    unary_ratios: list[float] = field(default_factory=list)
    batch_speedups: list[float] = field(default_factory=list)
    batched_per_item: list[float] = field(default_factory=list)


def _items(op: str, texts: Sequence[str]) -> list[Item]:
    return [split_pair(t) for t in texts] if op == "logprob_of" else list(texts)


def _score_side_by_side(
    inproc: Any, host: Any, texts: Sequence[str], config: BenchConfig
) -> dict[str, _Samples]:
    """Interleaved rounds over every op; see the module docstring for the design."""
    k = config.top_k
    warm, rest = texts[: config.warmup + config.batch], texts[config.warmup + config.batch :]
    samples = {op: _Samples() for op in OPS}
    for op in OPS:
        items = _items(op, warm)
        for item in items[: config.warmup]:
            _unary(op, inproc, item, k)
            _unary(op, host, item, k)
        _many(op, host, items[config.warmup :], k)
    for r in range(config.rounds):
        chunk = rest[r * config.batch : (r + 1) * config.batch]
        for op in OPS[r % len(OPS) :] + OPS[: r % len(OPS)]:
            items = _items(op, chunk)
            s = samples[op]
            inproc_times: list[float] = []
            host_times: list[float] = []
            batched = 0.0
            blocks = [items[i : i + config.block] for i in range(0, len(items), config.block)]
            for j, block in enumerate(blocks):
                order = [(inproc, inproc_times), (host, host_times)]
                if (r + j) % 2:
                    order.reverse()
                for view, sink in order:
                    sink += _time_each(partial(_unary, op, view, top_k=k), block)
                if j == (len(blocks) - 1) // 2:
                    batched = _timed(partial(_many, op, host, items, k))
            s.inproc_calls += inproc_times
            s.host_calls += host_times
            # Medians, not sums: a call caught by another tenant's burst would
            # otherwise decide the round's ratio on its own.
            inproc_typical = statistics.median(inproc_times)
            s.unary_ratios.append(statistics.median(host_times) / inproc_typical)
            s.batch_speedups.append(inproc_typical / (batched / len(items)))
            s.batched_per_item.append(batched / len(items))
    return samples


def _summary(op: str, s: _Samples) -> OpTiming:
    ms = 1e3
    return OpTiming(
        op=op,
        inproc_ms=statistics.median(s.inproc_calls) * ms,
        host_unary_ms=statistics.median(s.host_calls) * ms,
        host_batched_ms=statistics.median(s.batched_per_item) * ms,
        unary_ratio=statistics.median(s.unary_ratios),
        unary_ratio_range=(min(s.unary_ratios), max(s.unary_ratios)),
        batch_speedup=statistics.median(s.batch_speedups),
        batch_speedup_range=(min(s.batch_speedups), max(s.batch_speedups)),
    )


# -- start-up and import ----------------------------------------------------------


def host_spec(base: str, adapter: Path, threads: int = 0) -> swayhost.ModelSpec:
    """The host side of the comparison: a real round trip for every call.

    The host's result cache is off, or repeated texts would be timed as
    cache hits instead of forward passes.
    """
    env = {"OMP_NUM_THREADS": str(threads)} if threads > 0 else {}
    return swayhost.ModelSpec(
        kind="hf",
        base=base,
        adapter=adapter,
        dtype="fp32",
        device="cpu",
        worker=swayhost.WorkerOptions(env=env, cache_bytes=0),
    )


def _sway_backend(base: str, adapter: Path) -> Any:
    from dlm_sway.backends.hf import HuggingFaceDifferentialBackend
    from dlm_sway.core.model import ModelSpec

    spec = ModelSpec(kind="hf", base=base, adapter=adapter, dtype="fp32", device="cpu")
    return HuggingFaceDifferentialBackend(base_spec=spec, adapter_path=adapter)


def _python(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, check=True, timeout=120
    )


def _import_figures(reps: int) -> tuple[float, float, bool]:
    """Host import cost: wall time over a bare interpreter, and ``-X importtime``.

    Bare and importing interpreters alternate, and the figure is the median
    of the paired differences, so interpreter start-up noise cancels out.
    """
    diffs = []
    for _ in range(reps):
        bare = _timed(lambda: _python("-c", "pass"))
        full = _timed(lambda: _python("-c", "import swayhost"))
        diffs.append(full - bare)
    out = _python("-X", "importtime", "-c", "import sys, swayhost; print('torch' in sys.modules)")
    cumulative_us = 0
    for line in out.stderr.splitlines():
        parts = [p.strip() for p in line.removeprefix("import time:").split("|")]
        if len(parts) == 3 and parts[2] == "swayhost":
            cumulative_us = int(parts[1])
    return statistics.median(diffs) * 1e3, cumulative_us / 1e3, out.stdout.strip() == "True"


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


def _load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


# -- the whole run -------------------------------------------------------------------


def measure(base: str, adapter: Path, config: BenchConfig | None = None) -> Report:
    """Run every measurement once, on one model, and return the report's figures."""
    config = config or BenchConfig()
    load_before = _load()
    spec = host_spec(base, adapter, config.threads)
    startups = []
    start = time.perf_counter()
    host = swayhost.build(spec)
    startups.append(time.perf_counter() - start)
    try:
        start = time.perf_counter()
        sway = _sway_backend(base, adapter)
        construct = time.perf_counter() - start
        for _ in range(config.startup_reps - 1):
            start = time.perf_counter()
            extra = swayhost.build(spec)
            startups.append(time.perf_counter() - start)
            extra.close()
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(base)
        texts = make_texts(
            config.warmup + config.batch * (config.rounds + 1),
            lambda t: len(tokenizer(t).input_ids),
            seed=config.seed,
        )
        import torch

        threads_before = torch.get_num_threads()
        if config.threads > 0:
            torch.set_num_threads(config.threads)
        try:
            with sway.as_finetuned() as inproc_view, host.as_finetuned() as host_view:
                samples = _score_side_by_side(inproc_view, host_view, texts, config)
            hits = int(sway._inst.stats.cache_hits)
        finally:
            torch.set_num_threads(threads_before)
            sway.close()
    finally:
        host.close()
    import_ms, importtime_ms, imports_torch = _import_figures(config.import_reps)
    machine = machine_info()
    machine["torch intra-op threads, both sides"] = str(config.threads or "torch default")
    machine["load average (1/5/15 min) before → after"] = f"{load_before} → {_load()}"
    return Report(
        ops=tuple(_summary(op, samples[op]) for op in OPS),
        worker_startup_s=statistics.median(startups),
        inproc_construct_s=construct,
        import_ms=import_ms,
        importtime_ms=importtime_ms,
        host_imports_torch=imports_torch,
        sway_cache_hits=hits,
        machine=machine,
        config=config,
    )


def finite_positive(report: Report) -> bool:
    """Every figure of the report is a finite positive number (the smoke test's check)."""
    values = [
        report.worker_startup_s,
        report.inproc_construct_s,
        report.import_ms,
        report.importtime_ms,
    ]
    for t in report.ops:
        values += [t.inproc_ms, t.host_unary_ms, t.host_batched_ms, t.unary_ratio]
        values += [t.batch_speedup, *t.unary_ratio_range, *t.batch_speedup_range]
    return all(math.isfinite(v) and v > 0 for v in values)
