"""What one run measured: per-model results and the model-independent figures."""

from __future__ import annotations

from dataclasses import dataclass

from bench.caching import CacheFigures
from bench.config import BenchConfig, ModelPlan
from bench.endtoend import EndToEnd
from bench.measure import OpTiming, all_finite_positive
from bench.models import BenchModel
from bench.realsize import RealSizeFigures
from bench.restart import RestartFigures
from bench.startup import ImportFigures, ReadyFigures
from bench.sweep import SweepFigures
from bench.sweeps import KINDS, Sweep, SweepKind


@dataclass(frozen=True)
class ModelResult:
    """Everything measured on one model."""

    model: BenchModel
    plan: ModelPlan
    ops: tuple[OpTiming, ...]
    sweeps: tuple[Sweep, ...]
    cache: CacheFigures
    build_s: tuple[float, ...]
    """spawn → ready with the model loaded, for every host backend built on it."""
    sway_construct_s: float
    rss_after_load: int
    rss_after_run: int
    """The worker's resident memory after every sweep (batches of 128 grow it)."""
    sway_cache_hits: int
    """sway's in-process LRU hits during timed calls (must be 0), before the cache test."""
    sway_run: EndToEnd
    """``sway run`` of a fixed suite, whole command, in process vs through the host."""

    def sweep(self, kind: SweepKind) -> Sweep | None:
        return next((s for s in self.sweeps if s.kind == kind), None)


@dataclass(frozen=True)
class Report:
    models: tuple[ModelResult, ...]
    ready: ReadyFigures
    imports: ImportFigures
    restart: RestartFigures
    """Measured on the first model (the tiny one in a full run)."""
    real_size: RealSizeFigures
    adapters: dict[str, float] | None
    """Many adapters on the ~50M base (``bench.adapters.measure``); None in a quick run."""
    sweep: SweepFigures | None
    """``swayhost sweep`` vs separate ``sway run``s (``bench.sweep``); None in a quick run."""
    machine: dict[str, str]
    config: BenchConfig
    elapsed_s: float

    def result(self, name: str) -> ModelResult | None:
        return next((m for m in self.models if m.model.name == name), None)


def finite_positive(report: Report) -> bool:
    """Every figure is a finite positive number, and every sweep has points (the smoke test)."""
    values = [
        *report.ready.seconds,
        float(report.ready.rss),
        report.imports.wall_ms,
        report.imports.importtime_ms,
        report.elapsed_s,
        *report.restart.figures(),
        *report.real_size.figures(),
        *(report.adapters or {}).values(),
        *(report.sweep.figures() if report.sweep else []),
    ]
    for m in report.models:
        if {s.kind for s in m.sweeps} != set(KINDS) or not all(s.points for s in m.sweeps):
            return False
        values += [*m.build_s, m.sway_construct_s, float(m.rss_after_load), float(m.rss_after_run)]
        values += m.cache.figures()
        values += m.sway_run.figures()
        for t in m.ops:
            values += t.figures()
        for s in m.sweeps:
            for p in s.points:
                values += p.figures()
    return all_finite_positive(values)
