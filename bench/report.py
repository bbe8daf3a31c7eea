"""Render a :class:`~bench.measure.Report` as Markdown (the file) and a rich table (the console).

Both show the same rows; the Markdown also explains how the figures were
taken, because on a shared machine a number without its method means little.
"""

from __future__ import annotations

from bench.measure import BATCH_GOAL, UNARY_GOAL, OpTiming, Report

HEADERS = (
    "op",
    "in-process ms/call",
    "host unary ms/call",
    "host batched ms/item",
    f"host unary / in-process (goal ≤ {UNARY_GOAL:g}×)",
    f"in-process / host batched (goal ≥ {BATCH_GOAL:g}×)",
)


def _mark(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _op_label(t: OpTiming, top_k: int) -> str:
    return f"{t.op} (top_k={top_k})" if t.op == "next_token_dist" else t.op


def op_rows(report: Report) -> list[tuple[str, ...]]:
    """One row of cells per op, shared by both renderings."""
    rows: list[tuple[str, ...]] = []
    for t in report.ops:
        lo, hi = t.unary_ratio_range
        blo, bhi = t.batch_speedup_range
        rows.append(
            (
                _op_label(t, report.config.top_k),
                f"{t.inproc_ms:.2f}",
                f"{t.host_unary_ms:.2f}",
                f"{t.host_batched_ms:.3f}",
                f"{t.unary_ratio:.2f}× ({lo:.2f}–{hi:.2f}) {_mark(t.unary_pass)}",
                f"{t.batch_speedup:.1f}× ({blo:.1f}–{bhi:.1f}) {_mark(t.batch_pass)}",
            )
        )
    return rows


def other_rows(report: Report) -> list[tuple[str, str]]:
    c = report.config
    return [
        (
            f"worker start-up, spawn → ready incl. model load (median of {c.startup_reps})",
            f"{report.worker_startup_s:.2f} s",
        ),
        (
            "in-process sway backend construction (first, cold imports; for context)",
            f"{report.inproc_construct_s:.2f} s",
        ),
        (
            f"`import swayhost`, wall time over a bare interpreter (median of {c.import_reps})",
            f"{report.import_ms:.0f} ms",
        ),
        ("`import swayhost`, `-X importtime` cumulative", f"{report.importtime_ms:.0f} ms"),
        ("`import swayhost` pulls in torch", "yes" if report.host_imports_torch else "no"),
        ("sway in-process cache hits during timing (must be 0)", str(report.sway_cache_hits)),
    ]


def to_markdown(report: Report) -> str:
    c = report.config
    lines = [
        "# sway-plugin-host benchmark",
        "",
        "Tiny Llama + trained LoRA adapter, fp32 on CPU, `ft` view, one run.",
        "Machine noise is large here: read the ratios, not the absolute times.",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "---|" * len(HEADERS),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in op_rows(report)]
    lines += ["", "| start-up and import | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in other_rows(report)]
    lines += ["", "## Machine", ""]
    lines += [f"- {key}: {value}" for key, value in report.machine.items()]
    lines += [
        "",
        "## Method",
        "",
        f"- {c.rounds} rounds; each round scores {c.batch} fresh texts (8–40 tokens,"
        " English-like, deterministic) per op with every variant. No text is scored"
        " twice by the same variant and op, so sway's LRU cache never hits.",
        f"- Unary calls run in blocks of {c.block}, alternating in-process and host"
        " (ABBA, flipped each round); the batched call (`*_many`, one ScoreBatch RPC"
        " for the round's texts) runs between the blocks. Ops rotate each round.",
        f"- torch intra-op threads: {c.threads or 'torch default'} in this process and"
        " in the worker alike (a two-thread OpenMP team on a small shared machine"
        " stalls whenever another tenant takes a core, which swamps the overhead"
        " being measured).",
        f"- Warm-up first: {c.warmup} unary calls per variant and op, and one batch.",
        "- ms/call: median over all unary calls. ms/item: median over rounds of"
        " batch time / batch size.",
        "- Ratios are paired per round, on the same texts: median host unary call /"
        " median in-process call, and median in-process call / (batch time / batch"
        " size). The table gives their median over rounds and, in brackets, the range.",
        "",
    ]
    return "\n".join(lines)


def _colour(cell: str) -> str:
    return cell.replace("PASS", "[green]PASS[/]").replace("MISS", "[red]MISS[/]")


def print_rich(report: Report) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=160)  # piped or logged: do not squeeze the table
    table = Table(title="sway-plugin-host vs in-process sway (tiny model, fp32, CPU)")
    for header in HEADERS:
        table.add_column(header, justify="left" if header == "op" else "right")
    for row in op_rows(report):
        table.add_row(*row[:4], *(_colour(cell) for cell in row[4:]))
    console.print(table)
    extra = Table(show_header=False)
    extra.add_column("what")
    extra.add_column("value", justify="right")
    for name, value in other_rows(report):
        extra.add_row(name.replace("`", ""), value)
    console.print(extra)
    for key, value in report.machine.items():
        console.print(f"[dim]{key}: {value}[/]")
