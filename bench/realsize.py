"""One model at the size users fine-tune: load time, memory and ms per call, both sides.

The tiny and ~50M models show where the host's overhead lies; this row
shows what a user of a real model pays for it. The model has Qwen2-0.5B's
shape (494M parameters, 151,936-token vocabulary) with random weights and a
q/v LoRA, built offline by the model matrix's recipe (``tests/model_matrix.py``,
about 2 GB in the host's cache folder, a few minutes the first time). A
``--quick`` run measures the same way on the matrix's tiny Qwen2 instead,
so the smoke test covers this code without the 2 GB build.

Each round calls every op once per side on a fresh text, in ABBA order, and
the ratio is taken within the round (``bench.paired``). The in-process
side's memory is this process's resident-set growth from before sway's
backend is built to after the calls (safetensors weights are mapped and
become resident as they are used): an estimate, since the bench process
has held other models before. The host's load time includes the worker's
interpreter start and framework imports, which the bench process paid long
before it builds sway's backend.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import swayhost
from swayhost.paths import cache_dir

from bench.models import BenchModel, describe
from bench.paired import Ratio, abba, flip
from bench.sides import host_spec, sway_backend, torch_threads, worker_rss

TOP_K = 64
OPS: dict[str, Callable[[Any, int], object]] = {
    "logprob_of": lambda view, i: view.logprob_of(f"Round {i}: the river ran", " past the mill"),
    "rolling_logprob": lambda view, i: view.rolling_logprob(
        f"Round {i}: the lighthouse keeper counted seventeen gulls on the rocks."
    ),
    "next_token_dist": lambda view, i: view.next_token_dist(f"Round {i}: in the town", top_k=TOP_K),
}
"""Each op with a text that differs every round, so no cache on either side answers."""


@dataclass(frozen=True)
class OpRow:
    op: str
    in_process_ms: float
    host_ms: float
    ratio: Ratio


@dataclass(frozen=True)
class RealSizeFigures:
    model: BenchModel
    sway_load_s: float
    host_load_s: float
    """sway's backend construction, and ``swayhost.build`` (worker start-up and Load)."""
    sway_rss_growth: int
    worker_rss: int
    rows: tuple[OpRow, ...]

    def figures(self) -> list[float]:
        values = [self.sway_load_s, self.host_load_s, float(self.worker_rss)]
        for row in self.rows:
            values += [row.in_process_ms, row.host_ms, row.ratio.median]
        return values


def real_size_model(quick: bool) -> BenchModel:
    """The Qwen2-0.5B-shaped model, or the matrix's tiny Qwen2 for a smoke run."""
    from tests.model_matrix import Cell, build_cell, build_real_size

    root = cache_dir() / "model-matrix"
    if quick:
        built = build_cell(root, Cell("qwen2", "lora"))
        return describe("qwen2-tiny", built.base_dir, built.adapter_dir)
    built = build_real_size(root)
    return describe("qwen2-0.5b", built.base_dir, built.adapter_dir)


def _rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def measure_real_size(
    model: BenchModel, rounds: int, threads: int, tick: Callable[[], None]
) -> RealSizeFigures:
    """Load both sides once, then ``rounds`` ABBA rounds of every op on the ft view."""
    start = time.perf_counter()
    host = swayhost.build(host_spec(model, threads))
    host_load_s = time.perf_counter() - start
    try:
        before = _rss()
        start = time.perf_counter()
        sway = sway_backend(model)
        sway_load_s = time.perf_counter() - start
        try:
            with (
                torch_threads(threads),
                sway.as_finetuned() as inproc_view,
                host.as_finetuned() as host_view,
            ):
                rows = _time_ops(inproc_view, host_view, rounds, tick)
            growth = max(0, _rss() - before)  # after the calls: weights are mapped lazily
        finally:
            sway.close()
        memory = worker_rss(host)
    finally:
        host.close()
    return RealSizeFigures(model, sway_load_s, host_load_s, growth, memory, rows)


def _time_ops(inproc: Any, host: Any, rounds: int, tick: Callable[[], None]) -> tuple[OpRow, ...]:
    seconds: dict[str, tuple[list[float], list[float]]] = {op: ([], []) for op in OPS}
    for i, op in enumerate(OPS):  # one call each, untimed: first-call costs on both sides
        OPS[op](inproc, -1 - i)
        OPS[op](host, -1 - i)
    for r in range(rounds):
        for j, (op, call) in enumerate(OPS.items()):
            a, b = abba(
                flip(r, j), partial(_timed, call, inproc, r), partial(_timed, call, host, r)
            )
            seconds[op][0].append(a)
            seconds[op][1].append(b)
        tick()
    rows = []
    for op, (ins, outs) in seconds.items():
        ratio = Ratio.of([h / i for i, h in zip(ins, outs, strict=True)])
        rows.append(OpRow(op, statistics.median(ins) * 1e3, statistics.median(outs) * 1e3, ratio))
    return tuple(rows)


def _timed(call: Callable[[Any, int], object], view: Any, i: int) -> float:
    start = time.perf_counter()
    call(view, i)
    return time.perf_counter() - start
