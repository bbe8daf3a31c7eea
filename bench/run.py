"""One whole run: every model through every measurement, then the shared figures.

Per model, both sides stay open from the first measurement to the last
(``bench.sides``), and one ``TextPool`` feeds every measurement, so no text
is ever scored twice by the same side. The order: the per-op tables (ft, then base), the
batch-size, prompt-length and top_k sweeps (in one pair of views), the
caller sweep (each caller thread enters its own view), and last the cache
test, the only place where repeats are meant to hit a cache.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import ExitStack

from swayhost.spec import DEFAULT_CACHE_BYTES

from bench.caching import cache_rounds, measure_cache
from bench.config import BenchConfig, ModelPlan
from bench.endtoend import measure_sway_run
from bench.figures import ModelResult, Report
from bench.measure import measure_ops
from bench.models import BenchModel
from bench.progress import Steps
from bench.prompts import TextPool
from bench.realsize import measure_real_size, real_size_model
from bench.restart import measure_restarts
from bench.sides import build_host, host_spec, open_sides, sway_cache_hits, worker_rss
from bench.startup import import_figures, load_average, machine_info, ready_without_model
from bench.sweeps import (
    batch_sweep,
    callers_sweep,
    prompt_lengths,
    prompt_sweep,
    top_k_sweep,
    top_ks,
)


def _pool(model: BenchModel, seed: int) -> TextPool:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model.base_dir))
    return TextPool(lambda text: len(tokenizer(text).input_ids), seed=seed)


def measure_model(
    model: BenchModel, plan: ModelPlan, config: BenchConfig, steps: Steps
) -> ModelResult:
    """Every per-model measurement, in the order the module docstring gives."""
    name = model.name
    pool = _pool(model, config.seed)
    with ExitStack() as stack:
        with steps.phase(f"{name}: start the worker and sway's backend", 1):
            sides = stack.enter_context(open_sides(model, config.threads))
        sway, host = sides.sway, sides.host
        builds = [sides.host_build_s]
        # sway scores the base view as much as the fine-tuned one; both tables
        # come first, back to back, so they see the same machine.
        with (
            sway.as_finetuned() as inproc_view,
            host.as_finetuned() as host_view,
            steps.phase(f"{name}: per-op table, ft view", plan.rounds) as tick,
        ):
            ops = measure_ops(inproc_view, host_view, pool, plan, view="ft", tick=tick)
        with (
            sway.as_base() as inproc_view,
            host.as_base() as host_view,
            steps.phase(f"{name}: per-op table, base view", plan.rounds) as tick,
        ):
            ops += measure_ops(inproc_view, host_view, pool, plan, view="base", tick=tick)
        with sway.as_finetuned() as inproc_view, host.as_finetuned() as host_view:
            total = len(plan.batch_sizes) * plan.sweep_rounds
            with steps.phase(f"{name}: batch size", total) as tick:
                batch = batch_sweep(inproc_view, host_view, pool, plan, name, tick)
            total = len(prompt_lengths(plan, model)) * plan.sweep_rounds
            with steps.phase(f"{name}: prompt length", total) as tick:
                prompt = prompt_sweep(inproc_view, host_view, pool, plan, model, tick)
            total = len(top_ks(plan, model)) * plan.sweep_rounds
            with steps.phase(f"{name}: top_k", total) as tick:
                top_k = top_k_sweep(inproc_view, host_view, pool, plan, model, tick)
        total = len(plan.callers) * plan.sweep_rounds
        with steps.phase(f"{name}: concurrent callers", total) as tick:
            callers = callers_sweep(sway, host, pool, plan, name, tick)
        hits = sway_cache_hits(sway)
        rss_after_run = worker_rss(host)
        with steps.phase(f"{name}: host cache", 1 + cache_rounds(plan.cache_calls)) as tick:
            cached, build_s = build_host(
                host_spec(model, config.threads, cache_bytes=DEFAULT_CACHE_BYTES)
            )
            builds.append(build_s)
            tick()
            with cached, sway.as_finetuned() as inproc_view, cached.as_finetuned() as cached_view:
                cache = measure_cache(
                    inproc_view, cached_view, pool, plan.cache_calls, plan.top_k, tick
                )
        extra = max(0, plan.startup_reps - len(builds))
        with steps.phase(f"{name}: start-up with model load", extra) as tick:
            for _ in range(extra):
                backend, build_s = build_host(host_spec(model, config.threads))
                backend.close()
                builds.append(build_s)
                tick()
    with steps.phase(f"{name}: `sway run`, in process vs host", plan.sway_run_rounds) as tick:
        sway_run = measure_sway_run(model, plan.sway_run_rounds, config.threads, tick)
    steps.note(f"{model.label}: done")
    return ModelResult(
        model=model,
        plan=plan,
        ops=ops,
        sweeps=(batch, callers, prompt, top_k),
        cache=cache,
        build_s=tuple(builds),
        sway_construct_s=sides.sway_construct_s,
        rss_after_load=sides.rss_after_load,
        rss_after_run=rss_after_run,
        sway_cache_hits=hits,
        sway_run=sway_run,
    )


def run(config: BenchConfig, models: Sequence[BenchModel], steps: Steps) -> Report:
    """The whole run; ``models`` in order, each with ``config.plan(model.name)``."""
    start = time.perf_counter()
    load_before = load_average()
    with steps.phase("worker spawn → ready, no model", 1):
        ready = ready_without_model(config.ready_reps, config.threads)
    results = tuple(measure_model(m, config.plan(m.name), config, steps) for m in models)
    with steps.phase(f"{models[0].name}: SIGKILL → next good call", 1):
        restart = measure_restarts(models[0], config.restart_reps, config.threads)
    with steps.phase("real-size model: build or reuse", 1):
        big = real_size_model(config.quick)
    with steps.phase(f"{big.label}: load and calls", config.real_size_rounds) as tick:
        real_size = measure_real_size(big, config.real_size_rounds, config.threads, tick)
    adapters = sweep = None
    if not config.quick:  # minutes each: a full run's measurements only
        from bench.adapters import measure as measure_adapters
        from bench.sweep import measure_sweep

        with steps.phase("many adapters on the ~50M base: swap, add, memory", 1):
            adapters = measure_adapters(reps=1)
        with steps.phase("sweep of 8 tiny adapters vs 8 `sway run`s", 1):
            sweep = measure_sweep()
    with steps.phase("`import swayhost`", 1):
        imports = import_figures(config.import_reps)
    machine = machine_info()
    machine["torch intra-op threads, both sides"] = str(config.threads or "torch default")
    machine["load average (1/5/15 min) before → after"] = f"{load_before} → {load_average()}"
    return Report(
        models=results,
        ready=ready,
        imports=imports,
        restart=restart,
        real_size=real_size,
        adapters=adapters,
        sweep=sweep,
        machine=machine,
        config=config,
        elapsed_s=time.perf_counter() - start,
    )
