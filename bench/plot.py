"""``bench.png``: the four sweeps as one figure, both models, in-process lines for reference.

matplotlib is imported here and only here, lazily, with the Agg backend: it
is a dev dependency of the bench, and drawing must work without a display.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from bench.figures import Report
from bench.sweeps import BATCH, CALLERS, PROMPT, TOP_K, SweepKind

COLOURS = {"tiny": "tab:blue", "50m": "tab:orange"}


def _series(report: Report, kind: SweepKind) -> list[tuple[str, list[int], Any]]:
    """(model, x values, points) for every model that ran the sweep."""
    found = []
    for m in report.models:
        sweep = m.sweep(kind)
        if sweep is not None and sweep.points:
            found.append((m.model.name, [p.x for p in sweep.points], sweep.points))
    return found


def _plain(value: float, _: int = 0) -> str:
    return f"{value:g}"


def _minor_labels(ax: Any) -> Any:
    """Minor log-tick labels, as many as the y range leaves room for.

    All of them within a decade, 2× and 5× a power of ten within a few,
    none beyond: a crowded axis turns to ink.
    """
    from matplotlib.ticker import FuncFormatter

    def label(value: float, _: int = 0) -> str:
        lo, hi = ax.get_ylim()
        if value <= 0 or lo <= 0:
            return ""
        decades = math.log10(hi / lo)
        lead = round(value / 10 ** math.floor(math.log10(value)), 6)
        if decades <= 1 or (decades <= 2.5 and lead in (2.0, 5.0)):
            return _plain(value)
        return ""

    return FuncFormatter(label)


def _integer_ticks(ax: Any, report: Report, kind: SweepKind) -> None:
    """Log-2 x axis labelled with the measured values; plain numbers on the y axis.

    A value too close to the previous label (the tiny model's full vocabulary,
    448, next to 512) keeps its point but not its label.
    """
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ticks: list[int] = []
    for x in sorted({x for _, values, _ in _series(report, kind) for x in values}):
        if not ticks or x / ticks[-1] >= 1.5:
            ticks.append(x)
    ax.set_xscale("log", base=2)
    if ticks:
        ax.set_xticks(ticks)
    ax.xaxis.set_major_formatter(FuncFormatter(_plain))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_formatter(FuncFormatter(_plain))
    if ax.get_yscale() == "log":
        ax.yaxis.set_minor_formatter(_minor_labels(ax))


def _per_item_time(ax: Any, report: Report) -> None:
    for name, xs, points in _series(report, BATCH):
        colour = COLOURS.get(name)
        ax.plot(xs, [p.host_ms for p in points], "o-", color=colour, label=f"{name} host batched")
        ax.plot(xs, [p.inproc_ms for p in points], "--", color=colour, label=f"{name} in-process")
    ax.set(yscale="log", xlabel="batch size", ylabel="ms per item")
    _integer_ticks(ax, report, BATCH)
    ax.set_title("Per-item time vs batch size")


def _throughput(ax: Any, report: Report) -> None:
    for name, xs, points in _series(report, CALLERS):
        colour = COLOURS.get(name)
        ax.plot(xs, [p.host_per_s for p in points], "o-", color=colour, label=f"{name} host")
        ax.plot(
            xs,
            [p.inproc_per_s for p in points],
            "--",
            color=colour,
            label=f"{name} in-process (sequential)",
        )
    ax.set(yscale="log", xlabel="concurrent callers", ylabel="calls per second")
    _integer_ticks(ax, report, CALLERS)
    ax.set_title("Throughput vs concurrent callers")


def _ratio(ax: Any, report: Report, kind: SweepKind) -> None:
    for name, xs, points in _series(report, kind):
        colour = COLOURS.get(name)
        ax.plot(xs, [p.ratio.median for p in points], "o-", color=colour, label=name)
        ax.fill_between(
            xs, [p.ratio.lo for p in points], [p.ratio.hi for p in points], color=colour, alpha=0.15
        )
    ax.axhline(1.0, color="grey", linestyle="--", linewidth=1, label="in-process (1×)")
    _integer_ticks(ax, report, kind)
    ax.set(xlabel=kind.x_label, ylabel="host / in-process time per call")
    ax.set_title(f"Unary ratio vs {kind.x_label}")


def write_plot(report: Report, path: Path) -> None:
    """Draw the figure and write it to ``path`` atomically (a temporary file, then rename)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 9), constrained_layout=True)
    _per_item_time(axes[0][0], report)
    _throughput(axes[0][1], report)
    _ratio(axes[1][0], report, PROMPT)
    _ratio(axes[1][1], report, TOP_K)
    for ax in axes.flat:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(
        "sway-plugin-host vs in-process dlm-sway (fp32, CPU, torch threads: "
        f"{report.machine.get('torch intra-op threads, both sides', '?')})"
    )
    tmp = path.with_name(path.name + ".tmp")
    fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    tmp.replace(path)
