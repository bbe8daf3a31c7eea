"""End to end: ``sway run`` of one fixed suite, the whole command, in process vs through the host.

Per-call ratios say nothing about what a user waits for: interpreter start,
imports, model loads, worker start-up and the probes' own Python all count.
This runs sway's real CLI on a fixed suite twice per round, once with
``models.ft.kind: hf`` (sway's in-process backend) and once with ``kind:
custom`` + ``entry_point: swayhost.sway:HF`` (a worker process), in ABBA
order, and times each command from start to exit. Both commands see the same
environment, so the thread setting is the same on both sides (and in the
worker, which inherits it).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.models import BenchModel
from bench.paired import Ratio, abba, flip

SWAY = Path(sysconfig.get_path("scripts")) / "sway"
CONFIG_ENV = "SWAYHOST_CONFIG"
PROMPTS = [
    "The river ran",
    "In the town",
    "The baker sold",
    "A letter came",
    "The old road",
    "She opened the door",
    "At the market",
    "The winter was",
]
SUITE: list[dict[str, Any]] = [
    {"name": "baseline", "kind": "null_adapter", "runs": 3, "cache": False},
    {"name": "shift", "kind": "delta_kl", "prompts": PROMPTS},
    {
        "name": "ablation",
        "kind": "adapter_ablation",
        "prompts": PROMPTS[:2],
        "lambdas": [0.0, 0.25, 0.5, 0.75, 1.0, 1.25],
    },
    {"name": "drift", "kind": "calibration_drift", "items_limit": 16},
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
"""The suite shape of the README's example, larger: null_adapter ×3, delta_kl on 8
prompts, ablation over 6 λ, calibration_drift on 16 items, 3 preference triples."""


@dataclass(frozen=True)
class EndToEnd:
    """Whole-command wall times of ``sway run``, paired per round."""

    in_process_s: tuple[float, ...]
    host_s: tuple[float, ...]
    ratio: Ratio
    """host / in-process, the median of per-round ratios."""

    @property
    def in_process_median_s(self) -> float:
        return statistics.median(self.in_process_s)

    @property
    def host_median_s(self) -> float:
        return statistics.median(self.host_s)

    def figures(self) -> list[float]:
        return [*self.in_process_s, *self.host_s, self.ratio.median]


def suite_yaml(model: BenchModel, ft: dict[str, str]) -> dict[str, Any]:
    """The suite on ``model``; ``ft`` picks the fine-tuned backend's kind."""
    files = {"base": str(model.base_dir), "dtype": "fp32", "device": "cpu"}
    return {
        "version": 1,
        "models": {
            "base": {"kind": "hf", **files},
            "ft": {**ft, **files, "adapter": str(model.adapter_dir)},
        },
        "defaults": {"seed": 0, "top_k": 32},
        "suite": SUITE,
    }


def _sway_run(spec: Path, report: Path, env: dict[str, str]) -> float:
    """Seconds ``sway run SPEC --json REPORT`` takes, start to exit; it must succeed."""
    report.unlink(missing_ok=True)
    start = time.perf_counter()
    done = subprocess.run(
        [str(SWAY), "run", str(spec), "--json", str(report)],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0 or not report.exists():
        raise RuntimeError(f"sway run {spec} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return seconds


def measure_sway_run(
    model: BenchModel, rounds: int, threads: int, tick: Callable[[], None] = lambda: None
) -> EndToEnd:
    """``rounds`` ABBA rounds of the suite, in process and through the host."""
    env = {k: v for k, v in os.environ.items() if k != CONFIG_ENV}
    if threads > 0:
        env["OMP_NUM_THREADS"] = str(threads)
    with tempfile.TemporaryDirectory(prefix="bench-sway-run-") as tmp:
        folder = Path(tmp)
        config = folder / "swayhost.yaml"
        config.write_text(yaml.safe_dump({"workers": {"hf": {"python": sys.executable}}}))
        env[CONFIG_ENV] = str(config)
        specs = {}
        for side, ft in (
            ("in_process", {"kind": "hf"}),
            ("host", {"kind": "custom", "entry_point": "swayhost.sway:HF"}),
        ):
            specs[side] = folder / f"{side}.yaml"
            specs[side].write_text(yaml.safe_dump(suite_yaml(model, ft)), encoding="utf-8")
        in_process: list[float] = []
        host: list[float] = []
        for r in range(max(1, rounds)):
            a, b = abba(
                flip(r),
                lambda: _sway_run(specs["in_process"], folder / "a.json", env),
                lambda: _sway_run(specs["host"], folder / "b.json", env),
            )
            in_process.append(a)
            host.append(b)
            tick()
    ratios = [h / i for h, i in zip(host, in_process, strict=True)]
    return EndToEnd(tuple(in_process), tuple(host), Ratio.of(ratios))
