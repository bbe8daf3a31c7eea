"""``python -m bench.sweep``: 8 adapters by ``swayhost sweep`` vs 8 ``sway run``s through the host.

The issue's goal: a sweep of 8 tiny adapters through one worker at least 4×
faster than 8 separate ``sway run``s (each ``kind: custom`` with
``entry_point: swayhost.sway:HF``, so each starts a worker and loads the base),
with identical numbers. Both ways run the same suite on the tiny model's
checkpoints (``swayworker.hf.checkpoints``) as subprocesses, timed by wall
clock, each with a fresh sway cache; every per-adapter report must be equal
(probes, null stats, score: everything but timings). Prints Markdown.
``python -m bench`` runs it too (``measure_sweep``), for its goals table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.models import tiny_model

SWAY = Path(sysconfig.get_path("scripts")) / "sway"
ROOT = Path(__file__).resolve().parents[1]
STEPS = (100, 200, 300, 400, 500, 600, 700, 800)
SUITE: list[dict[str, Any]] = [
    {"name": "baseline", "kind": "null_adapter", "runs": 3, "cache": False},
    {"name": "shift", "kind": "delta_kl", "prompts": ["The river ran", "In the town"]},
    {
        "name": "ablation",
        "kind": "adapter_ablation",
        "prompts": ["The river ran"],
        "lambdas": [0.0, 0.5, 1.0, 1.25],
    },
    {
        "name": "preference",
        "kind": "preference_flip",
        "triples": [
            {"prompt": "The baker sold", "chosen": " warm bread", "rejected": " cold stones"},
            {"prompt": "The dog barked", "chosen": " near the bridge", "rejected": " at noon"},
            {"prompt": "The librarian kept", "chosen": " a list", "rejected": " a horse"},
        ],
    },
]
"""The README's "Sweeping checkpoints" suite (``tools/sweep_example.py`` runs it too)."""


def sway_yaml(base: Path, adapter: Path | None = None) -> dict[str, Any]:
    """The suite with ``models.ft`` served by the host's HF worker; without
    ``adapter``, the spec a sweep takes (it names each adapter itself)."""
    model = {"base": str(base), "dtype": "fp32", "device": "cpu"}
    ft = {"kind": "custom", "entry_point": "swayhost.sway:HF", **model}
    if adapter is not None:
        ft["adapter"] = str(adapter)
    return {
        "version": 1,
        "models": {"base": {"kind": "hf", **model}, "ft": ft},
        "defaults": {"seed": 0, "top_k": 32},
        "suite": SUITE,
    }


def comparable(report: dict[str, Any]) -> dict[str, Any]:
    """Everything a report says about the model: probes (less timings), null stats, score."""
    probes = [{k: v for k, v in p.items() if k != "duration_s"} for p in report["probes"]]
    return {"probes": probes, "null_stats": report["null_stats"], "score": report["score"]}


def run_timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=1800)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv[:4])} failed ({done.returncode}):\n{done.stderr[-3000:]}"
        )
    return elapsed


@dataclass(frozen=True)
class SweepFigures:
    """Wall seconds of the same suite over the same adapters, both ways; reports were equal."""

    adapters: int
    separate_s: float
    sweep_s: float

    @property
    def speedup(self) -> float:
        return self.separate_s / self.sweep_s

    def figures(self) -> list[float]:
        return [self.separate_s, self.sweep_s, self.speedup]

    def table(self) -> str:
        n = self.adapters
        way = f"{n} × `sway run` (ft via `swayhost.sway:HF`)"
        return "\n".join(
            [
                f"## Sweep of {n} tiny adapters vs {n} `sway run`s through the host\n",
                "| way | wall s | s per adapter |",
                "|---|---:|---:|",
                f"| {way} | {self.separate_s:.1f} | {self.separate_s / n:.2f} |",
                f"| `swayhost sweep` | {self.sweep_s:.1f} | {self.sweep_s / n:.2f} |",
                f"\nSpeed-up: {self.speedup:.2f}× (goal ≥ 4×); every report identical.",
            ]
        )


def measure_sweep(work: Path | None = None) -> SweepFigures:
    """Both ways on the tiny model's checkpoints; raises if any report differs."""
    from swayworker.hf.checkpoints import build_checkpoints

    model = tiny_model()
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as scratch:
        work = (work or Path(scratch)).resolve()
        checkpoints = build_checkpoints(model.adapter_dir, work / "run", STEPS)
        env = {
            **{k: v for k, v in os.environ.items() if k != "SWAYHOST_CONFIG"},
            "PYTHONPATH": os.pathsep.join([str(ROOT / "host"), str(ROOT / "workers")]),
            "XDG_CONFIG_HOME": str(work / "config"),
        }
        separate: dict[str, dict[str, Any]] = {}
        started = time.perf_counter()
        for checkpoint in checkpoints:
            folder = work / "separate" / checkpoint.name
            folder.mkdir(parents=True, exist_ok=True)
            spec = folder / "sway.yaml"
            spec.write_text(yaml.safe_dump(sway_yaml(model.base_dir, checkpoint)))
            run_env = {**env, "XDG_CACHE_HOME": str(work / "cache-separate")}
            run_timed([str(SWAY), "run", str(spec), "--json", str(folder / "report.json")], run_env)
            separate[checkpoint.name] = json.loads((folder / "report.json").read_text())
        separate_s = time.perf_counter() - started

        spec = work / "sway.yaml"
        spec.write_text(yaml.safe_dump(sway_yaml(model.base_dir, model.adapter_dir)))
        out = work / "sweep"
        sweep_env = {**env, "XDG_CACHE_HOME": str(work / "cache-sweep")}
        command = [sys.executable, "-m", "swayhost", "sweep", str(spec), "--out", str(out)]
        sweep_s = run_timed([*command, "--adapter", str(work / "run" / "checkpoint-*")], sweep_env)

        for label, reference in separate.items():
            got = json.loads((out / label / "report.json").read_text())
            if comparable(got) != comparable(reference):
                raise RuntimeError(f"{label}: the sweep's report differs from sway run's")
    return SweepFigures(len(checkpoints), separate_s, sweep_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sweep", description=__doc__)
    parser.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    args = parser.parse_args(argv)
    print(measure_sweep(args.work).table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
