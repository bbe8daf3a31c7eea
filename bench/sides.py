"""The two sides of every comparison: in-process dlm-sway and the host, on one model.

Both load the same base and adapter, fp32 on CPU, with the same number of
torch threads, and both are open for the whole of a model's measurements,
so every ratio compares calls made minutes apart at most, in one process.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import swayhost

from bench.models import BenchModel


def host_spec(model: BenchModel, threads: int, *, cache_bytes: int = 0) -> swayhost.ModelSpec:
    """The host side: a real round trip for every call unless ``cache_bytes`` says otherwise.

    The host's result cache is off by default, or a repeated text would be
    timed as a cache hit instead of a forward pass. Dynamic batching stays
    on (the default): a lone caller goes unary through it, and the caller
    sweep is what it is for.
    """
    env = {"OMP_NUM_THREADS": str(threads)} if threads > 0 else {}
    return swayhost.ModelSpec(
        kind="hf",
        base=str(model.base_dir),
        adapter=model.adapter_dir,
        dtype="fp32",
        device="cpu",
        worker=swayhost.WorkerOptions(env=env, cache_bytes=cache_bytes),
    )


def sway_backend(model: BenchModel) -> Any:
    """sway's own ``HuggingFaceDifferentialBackend``, in this process."""
    from dlm_sway.backends.hf import HuggingFaceDifferentialBackend
    from dlm_sway.core.model import ModelSpec

    spec = ModelSpec(
        kind="hf", base=str(model.base_dir), adapter=model.adapter_dir, dtype="fp32", device="cpu"
    )
    return HuggingFaceDifferentialBackend(base_spec=spec, adapter_path=model.adapter_dir)


def sway_cache_hits(sway: Any) -> int:
    """Calls sway's in-process LRU answered: timed calls must have none."""
    return int(sway._inst.stats.cache_hits)


def worker_rss(backend: swayhost.RemoteBackend) -> int:
    """Resident set size of the worker serving ``backend``, in bytes."""
    import psutil

    return int(psutil.Process(backend.pid).memory_info().rss)


def build_host(spec: swayhost.ModelSpec) -> tuple[swayhost.RemoteBackend, float]:
    """A host backend and the seconds from spawn to ready with the model loaded."""
    start = time.perf_counter()
    backend = swayhost.build(spec)
    return backend, time.perf_counter() - start


@dataclass
class Sides:
    """Both backends for one model, open together."""

    model: BenchModel
    sway: Any
    host: swayhost.RemoteBackend
    host_build_s: float
    """spawn → ready with the model loaded, for this (the first) host backend."""
    sway_construct_s: float
    """The in-process backend's construction (the first one pays the cold imports)."""
    rss_after_load: int
    """The worker's resident memory once the model is loaded, before any call."""


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """This process's torch intra-op threads set to ``threads`` (0: leave as is)."""
    import torch

    before = torch.get_num_threads()
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def open_sides(model: BenchModel, threads: int) -> Iterator[Sides]:
    """Start the host's worker and build sway's backend; close both on exit."""
    host, build_s = build_host(host_spec(model, threads))
    try:
        rss = worker_rss(host)
        start = time.perf_counter()
        sway = sway_backend(model)
        construct_s = time.perf_counter() - start
        try:
            with torch_threads(threads):
                yield Sides(model, sway, host, build_s, construct_s, rss)
        finally:
            sway.close()
    finally:
        host.close()
