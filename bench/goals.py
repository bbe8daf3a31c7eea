"""The issue's goals, and the verdict of one run against each.

Every goal is a ratio taken within the run (or, for start-up and import,
an absolute time), so a verdict never compares figures from two runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.adapters import ADAPTERS
from bench.figures import ModelResult, Report
from bench.measure import worst_unary
from bench.sweeps import CALLERS

UNARY_GOAL = {"tiny": 1.3, "50m": 1.05}
"""Host unary per-call time may be at most this multiple of an in-process call."""
SWAY_RUN_GOAL = {"tiny": 1.15, "50m": 1.05}
"""``sway run`` through the host: whole-command wall time / in process."""
BATCHED_GOAL = 2.0
BATCHED_OPS = ("logprob_of", "rolling_logprob")
"""On the 50M model, a host ``*_many`` item of these ops: ≥ 2× in-process calls/s."""
COLD_RESTART_GOAL_S = 1.0
STANDBY_RESTART_GOAL_S = 0.3
CALLERS_AT = 8
CALLERS_GOAL = {"tiny": 3.0, "50m": 1.5}
"""8 concurrent host callers: at least this multiple of in-process sequential throughput."""
CACHE_GOAL = 50.0
"""A cache hit: at least this many times faster than a worker round trip."""
READY_GOAL_S = 1.0
IMPORT_GOAL_MS = 300.0
SWAP_GOAL = 0.10
"""A second adapter Loaded on a warm base: at most this share of a cold Load of the same spec."""
RESIDENT_RSS_GOAL = 1.10
"""8 adapters resident: worker RSS at most this multiple of one adapter's + 8 adapters' size."""
SWEEP_GOAL = 4.0
"""``swayhost sweep`` of 8 tiny adapters: at least this many times faster than 8 ``sway run``s."""


@dataclass(frozen=True)
class GoalRow:
    goal: str
    model: str
    target: str
    measured: str
    passed: bool | None
    """None: not measured in this run (the model or the point was left out)."""

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "MISS", None: "not measured"}[self.passed]


def _unary(m: ModelResult) -> GoalRow:
    goal = UNARY_GOAL.get(m.model.name, UNARY_GOAL["tiny"])
    worst = worst_unary(m.ops)
    others = ", ".join(
        f"{t.view} {t.op} {t.unary_ratio.median:.2f}×" for t in m.ops if t is not worst
    )
    return GoalRow(
        "host unary per-call time / in-process",
        m.model.name,
        f"≤ {goal:g}×",
        f"{worst.unary_ratio.text()} for {worst.view} {worst.op}, the worst (others: {others})",
        worst.unary_ratio.median <= goal,
    )


def _callers(m: ModelResult) -> GoalRow:
    goal = CALLERS_GOAL.get(m.model.name, CALLERS_GOAL["tiny"])
    sweep = m.sweep(CALLERS)
    point = sweep.at(CALLERS_AT) if sweep is not None else None
    name = f"{CALLERS_AT} concurrent callers (dynamic batching): throughput / in-process sequential"
    if point is None:
        return GoalRow(name, m.model.name, f"≥ {goal:g}×", "—", None)
    return GoalRow(
        name,
        m.model.name,
        f"≥ {goal:g}×",
        f"{point.ratio.text()}; {point.items_per_rpc:.1f} calls per RPC",
        point.ratio.median >= goal,
    )


def _cache(m: ModelResult) -> GoalRow:
    c = m.cache
    return GoalRow(
        "repeated call from the host cache: worker round trip / cache hit",
        m.model.name,
        f"≥ {CACHE_GOAL:g}×",
        f"{c.ratio.text(0)}; {c.round_trip_ms:.2f} ms vs {c.hit_ms * 1e3:.0f} µs",
        c.ratio.median >= CACHE_GOAL,
    )


def _sway_run(m: ModelResult) -> GoalRow:
    goal = SWAY_RUN_GOAL.get(m.model.name, SWAY_RUN_GOAL["tiny"])
    e2e = m.sway_run
    return GoalRow(
        "`sway run` of a fixed suite, whole command: host / in process",
        m.model.name,
        f"≤ {goal:g}×",
        f"{e2e.ratio.text()}; {e2e.host_median_s:.1f} s vs {e2e.in_process_median_s:.1f} s",
        e2e.ratio.median <= goal,
    )


def _batched(m: ModelResult) -> GoalRow | None:
    """Only for the ~50M model, where a batch must beat compute, not just round trips."""
    if m.model.name != "50m":
        return None
    timings = [t for t in m.ops if t.op in BATCHED_OPS]
    worst = min(timings, key=lambda t: t.batch_speedup.median)
    return GoalRow(
        "host `*_many` item vs in-process call (logprob_of, rolling_logprob): speed-up",
        m.model.name,
        f"≥ {BATCHED_GOAL:g}×",
        f"{worst.batch_speedup.text()} for {worst.view} {worst.op}, the worst",
        worst.batch_speedup.median >= BATCHED_GOAL,
    )


def _restarts(report: Report) -> list[GoalRow]:
    r = report.restart
    name = report.models[0].model.name if report.models else "—"
    return [
        GoalRow(
            "SIGKILL → next good call, no standby (worker template, the default)",
            name,
            f"≤ {COLD_RESTART_GOAL_S:g} s",
            f"{r.cold_median_s:.2f} s (median of {len(r.cold_s)}; without the template"
            f" {r.spawn_median_s:.2f} s)",
            r.cold_median_s <= COLD_RESTART_GOAL_S,
        ),
        GoalRow(
            "SIGKILL → next good call, warm standby",
            name,
            f"≤ {STANDBY_RESTART_GOAL_S:g} s",
            f"{r.standby_median_s:.2f} s (median of {len(r.standby_s)})",
            r.standby_median_s <= STANDBY_RESTART_GOAL_S,
        ),
    ]


def _many_adapters(report: Report) -> list[GoalRow]:
    """Issue 17's goals, where this run measured them (a quick run does not)."""
    a, s = report.adapters, report.sweep
    swap = "second adapter on a warm base: its Load / a cold Load of the same spec"
    rss = "8 adapters resident: worker RSS / (RSS with one + 8 × adapter size)"
    sweep = "sweep of 8 adapters through one worker: 8 `sway run`s / `swayhost sweep`"
    rows: list[GoalRow] = []
    if a is not None:
        share = a["swap_s"] / a["cold_s"]
        budget = a["rss_one"] + ADAPTERS * a["adapter_bytes"]
        rows = [
            GoalRow(
                swap,
                "50m",
                f"≤ {SWAP_GOAL:.0%}",
                f"{share:.1%}: {a['swap_s'] * 1e3:.1f} ms vs {a['cold_s'] * 1e3:.0f} ms"
                f" (a fresh worker's cold Load: {a['fresh_s']:.2f} s; an adapter added beside"
                f" the others: {a['added_s'] * 1e3:.1f} ms)",
                share <= SWAP_GOAL,
            ),
            GoalRow(
                rss,
                "50m",
                f"≤ {RESIDENT_RSS_GOAL:.0%}",
                f"{a['rss_all'] / budget:.1%}: {a['rss_all'] / 2**20:.0f} MiB vs"
                f" {a['rss_one'] / 2**20:.0f} + {ADAPTERS} × {a['adapter_bytes'] / 2**20:.1f} MiB",
                a["rss_all"] / budget <= RESIDENT_RSS_GOAL,
            ),
        ]
    if s is not None:
        rows.append(
            GoalRow(
                sweep,
                "tiny",
                f"≥ {SWEEP_GOAL:g}×",
                f"{s.speedup:.2f}×: {s.separate_s:.1f} s vs {s.sweep_s:.1f} s; reports identical",
                s.speedup >= SWEEP_GOAL,
            )
        )
    return rows


def goal_rows(report: Report) -> list[GoalRow]:
    rows: list[GoalRow] = []
    for make in (_unary, _sway_run, _callers, _cache):
        rows += [make(m) for m in report.models]
    rows += [row for m in report.models if (row := _batched(m)) is not None]
    rows += _restarts(report)
    rows += _many_adapters(report)
    ready = report.ready.median_s
    rows.append(
        GoalRow(
            "worker spawn → ready, no model",
            "—",
            f"≤ {READY_GOAL_S:g} s",
            f"{ready:.2f} s (median of {len(report.ready.seconds)})",
            ready <= READY_GOAL_S,
        )
    )
    imp = report.imports.wall_ms
    rows.append(
        GoalRow(
            "`import swayhost` (wall time over a bare interpreter)",
            "—",
            f"≤ {IMPORT_GOAL_MS / 1e3:g} s",
            f"{imp / 1e3:.2f} s (median of {report.config.import_reps} pairs)",
            imp <= IMPORT_GOAL_MS,
        )
    )
    return rows
