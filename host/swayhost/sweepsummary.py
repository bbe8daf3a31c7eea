"""A sweep's results across adapters: JSON, a Markdown table and a PNG plot.

The question a sweep answers is "which checkpoint first moved the model",
so the table has one row per adapter (in sweep order) and one column per
probe, each cell the probe's score and verdict, and the plot draws each
probe's score against the adapter. matplotlib is imported only inside
``write_plot`` (Agg backend, no display needed): the host stays light.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from swayhost.sweep import AdapterResult

SUMMARY_JSON = "summary.json"
SUMMARY_MARKDOWN = "summary.md"
SUMMARY_PNG = "summary.png"
VERDICT_MARKS = {"pass": "✓", "fail": "✗", "warn": "!", "skip": "–", "error": "E"}


def probe_names(results: Sequence[AdapterResult]) -> list[str]:
    """The suite's probes in report order (every report of one suite has the same)."""
    names: list[str] = []
    for result in results:
        for probe in (result.report or {}).get("probes", []):
            if probe["name"] not in names:
                names.append(probe["name"])
    return names


def to_dict(results: Sequence[AdapterResult], sway_yaml: Path, out: Path) -> dict[str, Any]:
    """The summary as JSON-able data (``--json`` prints it; ``summary.json`` keeps it)."""
    rows = []
    for r in results:
        report = r.report or {}
        probes = {p["name"]: p for p in report.get("probes", [])}
        rows.append(
            {
                "label": r.adapter.label,
                "adapter": str(r.adapter.path),
                "status": r.status,
                "error": r.error,
                "report": str(out / r.adapter.label / "report.json") if r.report else None,
                "seconds": round(r.seconds, 3),
                "calls": r.calls,
                "overall": report.get("score", {}).get("overall"),
                "band": report.get("score", {}).get("band"),
                "scores": {name: p["score"] for name, p in probes.items()},
                "verdicts": {name: p["verdict"] for name, p in probes.items()},
            }
        )
    failed = sum(r.status == "failed" for r in results)
    return {
        "sway_yaml": str(sway_yaml),
        "out": str(out),
        "probes": probe_names(results),
        "adapters": rows,
        "failed": failed,
    }


def to_markdown(summary: dict[str, Any]) -> str:
    """One row per adapter, one column per probe: ``score mark`` (✓ pass, ✗ fail, ...)."""
    probes: list[str] = summary["probes"]
    header = ["adapter", "overall", *probes]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    for row in summary["adapters"]:
        if row["status"] == "failed":
            lines.append(f"| {row['label']} | failed |" + " |" * len(probes))
            continue
        cells = [row["label"], _number(row["overall"])]
        for name in probes:
            mark = VERDICT_MARKS.get(row["verdicts"].get(name, ""), "")
            cells.append(f"{_number(row['scores'].get(name))} {mark}".strip())
        lines.append("| " + " | ".join(cells) + " |")
    legend = ", ".join(f"{mark} {verdict}" for verdict, mark in VERDICT_MARKS.items())
    lines += ["", f"Cells: the probe's score, then its verdict ({legend})."]
    failures = [row for row in summary["adapters"] if row["status"] == "failed"]
    if failures:
        lines += ["", "Failed adapters:", ""]
        lines += [f"- `{row['label']}`: {row['error']}" for row in failures]
    return "\n".join(lines) + "\n"


def write_plot(summary: dict[str, Any], path: Path) -> None:
    """Each probe's score (and the overall score) against the adapter, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [row for row in summary["adapters"] if row["status"] != "failed"]
    labels = [row["label"] for row in rows]
    figure, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(labels) + 2.5), 4.5))
    try:
        x = list(range(len(labels)))
        for name in summary["probes"]:
            scores = [_plottable(row["scores"].get(name)) for row in rows]
            ax.plot(x, scores, marker="o", label=name)
        overall = [_plottable(row["overall"]) for row in rows]
        ax.plot(x, overall, color="black", linewidth=2.5, marker="s", label="overall")
        ax.set_xticks(x, labels, rotation=30, ha="right")
        ax.set_xlabel("adapter")
        ax.set_ylabel("score")
        ax.set_title(f"sway scores per adapter ({Path(summary['sway_yaml']).name})")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize="small")
        figure.tight_layout()
        figure.savefig(path, dpi=120)
    finally:
        plt.close(figure)


def write_all(summary: dict[str, Any], out: Path) -> None:
    """``summary.json``, ``summary.md`` and ``summary.png`` under ``out``."""
    (out / SUMMARY_JSON).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (out / SUMMARY_MARKDOWN).write_text(to_markdown(summary), encoding="utf-8")
    if any(row["status"] != "failed" for row in summary["adapters"]):
        write_plot(summary, out / SUMMARY_PNG)


def _number(value: Any) -> str:
    return "–" if value is None else f"{value:.3f}"


def _plottable(value: Any) -> float:
    return float("nan") if value is None else float(value)
