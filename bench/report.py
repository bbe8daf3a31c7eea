"""Render a :class:`~bench.figures.Report` as Markdown (the file) and rich tables (the console).

Both show the same sections, built once (``sections``); the Markdown also
explains how the figures were taken, because on a shared machine a number
without its method means little.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from bench.calls import SWEEP_OP
from bench.figures import ModelResult, Report
from bench.goals import goal_rows
from bench.sweeps import BATCH, CALLERS, PROMPT, TOP_K, Sweep, SweepKind

MIB = 1 << 20


@dataclass(frozen=True)
class Section:
    title: str
    headers: tuple[str, ...]
    rows: Sequence[tuple[str, ...]]
    note: str = ""


def threads_setting(report: Report) -> str:
    """The thread setting of the run, as the goals table names it."""
    threads = report.config.threads
    return f"{threads} thread{'s' if threads > 1 else ''}" if threads else "torch default"


def _goals(report: Report) -> Section:
    setting = threads_setting(report)
    rows = [(g.goal, g.model, setting, g.target, g.measured, g.verdict) for g in goal_rows(report)]
    return Section(
        "Goals",
        ("goal", "model", "threads", "target", "measured (median of rounds, range)", "verdict"),
        rows,
        "Every ratio is paired within this run: both sides on the same texts, interleaved."
        " `threads`: torch intra-op threads in this process and in the worker alike.",
    )


def _ops(report: Report) -> Section:
    rows = []
    for m in report.models:
        for t in m.ops:
            op = f"{t.op} (top_k={m.plan.top_k})" if t.op == "next_token_dist" else t.op
            rows.append(
                (
                    m.model.name,
                    t.view,
                    op,
                    f"{t.inproc_ms:.2f}",
                    f"{t.host_unary_ms:.2f}",
                    f"{t.host_batched_ms:.3f}",
                    t.unary_ratio.text(),
                    t.batch_speedup.text(1),
                )
            )
    return Section(
        "Per op: in-process vs host unary vs host batched",
        (
            "model",
            "view",
            "op",
            "in-process ms/call",
            "host unary ms/call",
            "host batched ms/item",
            "host unary / in-process",
            "in-process / host batched",
        ),
        rows,
        "Batched: one `*_many` call for all of a round's texts "
        f"({_per_model(report, 'batch')} texts per round).",
    )


def _per_model(report: Report, field: str) -> str:
    """``tiny: 64, 50m: 16``: a plan field, model by model."""
    return ", ".join(f"{m.model.name}: {getattr(m.plan, field)}" for m in report.models)


def _sweeps(report: Report, kind: SweepKind) -> list[tuple[ModelResult, Sweep]]:
    found = []
    for m in report.models:
        sweep = m.sweep(kind)
        if sweep is not None:
            found.append((m, sweep))
    return found


def _throughput_rows(report: Report, kind: SweepKind) -> list[tuple[str, ...]]:
    rows = []
    for m, sweep in _sweeps(report, kind):
        for p in sweep.points:
            row = [
                m.model.name,
                str(p.x),
                f"{p.inproc_ms:.2f}",
                f"{p.host_ms:.3f}",
                f"{p.inproc_per_s:.0f}",
                f"{p.host_per_s:.0f}",
                p.ratio.text(),
            ]
            if kind is CALLERS:
                row.append(f"{p.items_per_rpc:.1f}")
            rows.append(tuple(row))
    return rows


def _unary_rows(report: Report, kind: SweepKind) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []
    for m, sweep in _sweeps(report, kind):
        for p in sweep.points:
            rows.append(
                (
                    m.model.name,
                    str(p.x),
                    f"{p.inproc_ms:.2f}",
                    f"{p.host_ms:.2f}",
                    f"{p.host_ms - p.inproc_ms:+.2f}",
                    p.ratio.text(),
                )
            )
    return rows


def _sweep_sections(report: Report) -> list[Section]:
    throughput = (
        "in-process ms/call",
        "host ms/item",
        "in-process calls/s",
        "host items/s",
        "host / in-process throughput",
    )
    unary = ("in-process ms/call", "host ms/call", "host − in-process ms", "host / in-process")
    return [
        Section(
            BATCH.title,
            ("model", "batch size", *throughput),
            _throughput_rows(report, BATCH),
            "In-process: sequential unary calls (a sample of up to "
            f"{_per_model(report, 'reference_cap')} calls per round); host: one call for the"
            " whole batch (the worker runs at most 64 items per forward pass).",
        ),
        Section(
            CALLERS.title,
            ("model", "callers", *throughput, "calls per RPC"),
            _throughput_rows(report, CALLERS),
            f"Each caller makes a run of unary calls per round ({_per_model(report, 'per_caller')})"
            " in its own view; calls per RPC: how many the host coalesced into each RPC.",
        ),
        Section(PROMPT.title, ("model", "prompt tokens", *unary), _unary_rows(report, PROMPT)),
        Section(TOP_K.title, ("model", "top_k", *unary), _unary_rows(report, TOP_K)),
    ]


def _cache(report: Report) -> Section:
    rows = [
        (
            m.model.name,
            f"{m.cache.round_trip_ms:.2f}",
            f"{m.cache.hit_ms * 1e3:.0f}",
            m.cache.ratio.text(0),
            f"{m.cache.sway_first_ms:.2f}",
            f"{m.cache.sway_hit_ms * 1e3:.0f}",
        )
        for m in report.models
    ]
    return Section(
        "Host result cache: a repeated call",
        (
            "model",
            "host round trip ms",
            "host cache hit µs",
            "round trip / hit",
            "in-process first call ms",
            "in-process LRU hit µs",
        ),
        rows,
        "A second host backend with the default cache (64 MiB) scores each fresh text twice; "
        "in-process sway does the same on the same texts, for reference.",
    )


def _startup(report: Report) -> Section:
    models = report.models
    ready = report.ready

    rows = [
        (
            f"worker spawn → ready, no model (median of {len(ready.seconds)})",
            *[f"{ready.median_s:.2f} s" for _ in models],
        ),
        (
            "worker spawn → ready incl. model load (median)",
            *[f"{statistics.median(m.build_s):.2f} s (of {len(m.build_s)})" for m in models],
        ),
        (
            "in-process sway backend construction (first: cold imports)",
            *[f"{m.sway_construct_s:.2f} s" for m in models],
        ),
        ("worker RSS at ready, no model", *[f"{ready.rss / MIB:.0f} MiB" for _ in models]),
        (
            "worker RSS after model load",
            *[f"{m.rss_after_load / MIB:.0f} MiB" for m in models],
        ),
        (
            "worker RSS after the sweeps",
            *[f"{m.rss_after_run / MIB:.0f} MiB" for m in models],
        ),
        (
            "sway in-process cache hits during timed calls (must be 0)",
            *[str(m.sway_cache_hits) for m in models],
        ),
        (
            f"`import swayhost`, wall time over a bare interpreter (median of "
            f"{report.config.import_reps})",
            *[f"{report.imports.wall_ms:.0f} ms" for _ in models],
        ),
        (
            "`import swayhost`, `-X importtime` cumulative",
            *[f"{report.imports.importtime_ms:.0f} ms" for _ in models],
        ),
        (
            "`import swayhost` pulls in torch",
            *["yes" if report.imports.imports_torch else "no" for _ in models],
        ),
    ]
    return Section(
        "Start-up, import, memory",
        ("what", *(m.model.label for m in models)),
        rows,
        "Rows without a model (ready, import) are one figure, repeated in each column.",
    )


def _end_to_end(report: Report) -> Section:
    rows = []
    for m in report.models:
        e2e = m.sway_run
        rows.append(
            (
                m.model.label,
                f"{e2e.in_process_median_s:.2f} s",
                f"{e2e.host_median_s:.2f} s",
                e2e.ratio.text(),
                str(len(e2e.host_s)),
            )
        )
    r = report.restart
    return Section(
        "End to end and recovery",
        (
            "model",
            "`sway run` in process",
            "`sway run` through the host",
            "host / in process",
            "rounds",
        ),
        rows,
        "The whole `sway run` command (interpreter, imports, model loads, worker start-up,"
        " probes) on a fixed suite: null_adapter ×3, delta_kl on 8 prompts, ablation over 6 λ,"
        " calibration_drift on 16 items, 3 preference triples (`bench/endtoend.py`)."
        f" Recovery on {report.models[0].model.label if report.models else '—'}: SIGKILL of"
        f" the worker → next good call {r.cold_median_s:.2f} s from the worker template"
        f" ({', '.join(f'{s:.2f}' for s in r.cold_s)}), {r.spawn_median_s:.2f} s without it"
        f" ({', '.join(f'{s:.2f}' for s in r.spawn_s)}), {r.standby_median_s:.2f} s with a"
        f" warm standby ({', '.join(f'{s:.2f}' for s in r.standby_s)}). The template holds"
        f" {r.template_rss / 2**20:.0f} MiB resident, {r.template_uss / 2**20:.0f} MiB of it"
        " its own (the rest shared with the workers it forked).",
    )


def _real_size(report: Report) -> Section:
    r = report.real_size
    rows = [
        (row.op, f"{row.in_process_ms:.1f} ms", f"{row.host_ms:.1f} ms", row.ratio.text())
        for row in r.rows
    ]
    rows.append(
        ("load (construct / build)", f"{r.sway_load_s:.1f} s", f"{r.host_load_s:.1f} s", "—")
    )
    rows.append(
        (
            "resident memory",
            f"+{r.sway_rss_growth / MIB:.0f} MiB",
            f"{r.worker_rss / MIB:.0f} MiB",
            "—",
        )
    )
    return Section(
        f"Real-size model: {r.model.label}",
        ("what (ft view)", "in process", "through the host", "host / in process"),
        rows,
        f"Qwen2-0.5B's shape with random weights and a q/v LoRA (`bench/realsize.py`);"
        f" median of {report.config.real_size_rounds} ABBA rounds per op, fresh text"
        " each round. Memory after the calls: in process, this process's growth since"
        " before sway's backend was built; through the host, the worker's resident set."
        " The host's load includes the worker's interpreter start and framework imports,"
        " which this process had paid already.",
    )


def sections(report: Report) -> list[Section]:
    """Every table of the report, in order."""
    return [
        _goals(report),
        _ops(report),
        _end_to_end(report),
        _real_size(report),
        *_sweep_sections(report),
        _cache(report),
        _startup(report),
    ]


def _markdown_table(section: Section) -> list[str]:
    lines = [
        "| " + " | ".join(section.headers) + " |",
        "|" + "---|" * len(section.headers),
    ]
    lines += ["| " + " | ".join(row) + " |" for row in section.rows]
    return lines


def _method(report: Report) -> list[str]:
    c = report.config
    p = report.models[0].plan if report.models else None
    lines = [
        "## Method",
        "",
        "- Both sides load the same base model and LoRA adapter, fp32 on CPU, and score the"
        " `ft` view (the per-op table also the `base` view), each side entering the view"
        " once for a run of calls, as sway's probes do. In-process: dlm-sway's"
        " `HuggingFaceDifferentialBackend`. Host:"
        " `swayhost.build` (a worker process, gRPC over a Unix socket), result cache off"
        " (`cache_bytes=0`) except in the cache test, dynamic batching on (the default).",
        "- Texts are English-like and deterministic; every text is fresh (no side scores a text"
        " twice, so neither sway's LRU nor the host's cache can answer; the run checks sway's"
        " hit count). Texts are 8–40 tokens, except in the prompt-length sweep (exactly the"
        " given length, BOS included, clipped to the model's context: the tiny model holds"
        " 256 tokens).",
        "- Fairness: every figure is measured in rounds, both sides on the same texts, back to"
        " back, the order flipping every round and point (ABBA). Ratios are taken per round"
        " from per-call medians and reported as the median over rounds with the range in"
        " brackets, so one call or round caught by another tenant's burst decides nothing.",
        f"- The sweeps time `{SWEEP_OP}` (top_k {p.top_k if p else 64} except in the top_k"
        " sweep): batch size (one host `*_many` call against sequential in-process calls),"
        " concurrent callers (N host threads, each in its own view, against sequential"
        " in-process calls: sway's backend is not safe for concurrent views), prompt length"
        " and top_k (unary against unary). Throughput: host items / wall time of the batch or"
        " of all callers; in-process 1 / median call, which flatters in-process.",
        f"- torch intra-op threads: {threads_setting(report)} in this process and in the"
        " worker alike (`--threads N` sets both; the default is what users run, who set"
        " nothing; a two-thread OpenMP team on a small shared machine stalls whenever"
        " another tenant takes a core). With concurrent callers the host process's threads"
        " and the worker run on different cores, which a single in-process caller cannot use:"
        " that is part of what the host offers.",
        "- Rounds per model: "
        + "; ".join(
            f"{m.model.name}: per-op table {m.plan.rounds} × {m.plan.batch} texts per op,"
            f" sweeps {m.plan.sweep_rounds} rounds"
            for m in report.models
        )
        + ".",
        "- Start-up: spawn → ready is what the host waits for (handshake line, channel,"
        " SERVING health check, Describe); with a model, `swayhost.build` until it returns"
        " (Load included). Import: `python -c 'import swayhost'` minus `python -c pass`, paired.",
    ]
    if c.quick:
        lines.append("- **Quick run** (`--quick`): a smoke test, too few rounds to judge by.")
    return [*lines, ""]


def to_markdown(report: Report, plot_name: str | None = None) -> str:
    labels = ", ".join(m.model.label for m in report.models)
    lines = [
        "# sway-plugin-host benchmark",
        "",
        f"In-process dlm-sway against the host on the same model, side by side in one run"
        f" ({report.elapsed_s / 60:.1f} min). Models: {labels}. fp32 on CPU.",
        "The tiny model is where host overhead shows most (a forward pass costs about what a"
        " round trip does); the ~50M random Llama is where compute dominates.",
        "Machine noise is large here: read the ratios, not the absolute times.",
        "",
    ]
    if plot_name:
        lines += [f"![per-item time, throughput and ratios]({plot_name})", ""]
    for section in sections(report):
        lines += [f"## {section.title}", ""]
        if section.note:
            lines += [section.note, ""]
        lines += [*_markdown_table(section), ""]
    lines += ["## Machine", ""]
    lines += [f"- {key}: {value}" for key, value in report.machine.items()]
    lines += ["", *_method(report)]
    return "\n".join(lines)


def _colour(cell: str) -> str:
    return cell.replace("PASS", "[green]PASS[/]").replace("MISS", "[red]MISS[/]")


def print_rich(report: Report) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if not console.is_terminal:
        console = Console(width=180)  # piped or logged: do not squeeze the tables
    for section in sections(report):
        table = Table(title=section.title.replace("`", ""), title_justify="left")
        for i, header in enumerate(section.headers):
            table.add_column(header, justify="left" if i < 2 else "right")
        for row in section.rows:
            table.add_row(*(_colour(cell.replace("`", "")) for cell in row))
        console.print(table)
    for key, value in report.machine.items():
        console.print(f"[dim]{key}: {value}[/]")
    console.print(f"[dim]run time: {report.elapsed_s / 60:.1f} min[/]")
