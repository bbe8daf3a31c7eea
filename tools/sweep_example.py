"""Regenerate ``docs/sweep-example.{md,png}`` (the README's "Sweeping checkpoints").

``.venv/bin/python tools/sweep_example.py [WORK]`` builds the tiny model and
six checkpoints of its adapter under WORK (default ``/tmp/sweep-example``),
writes the README's ``sway.yaml`` there, runs ``swayhost sweep`` on the
checkpoints exactly as the README shows, and copies the summary table and
plot into ``docs/``. Offline, about a minute on two cores.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
sys.path.insert(0, str(ROOT))  # run as a script: the bench package holds the README's suite

from bench.sweep import sway_yaml  # noqa: E402


def main() -> int:
    work = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/sweep-example").resolve()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "host"), str(ROOT / "workers")]),
    }
    python = sys.executable
    subprocess.run([python, "-m", "swayworker.hf.checkpoints", str(work)], check=True, env=env)
    spec = sway_yaml(work / "tiny-llama-v1" / "base")
    (work / "sway.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    out = work / "sweep"
    shutil.rmtree(out, ignore_errors=True)
    command = [python, "-m", "swayhost", "sweep", str(work / "sway.yaml"), "--out", str(out)]
    command += ["--adapter", str(work / "checkpoints" / "checkpoint-*")]
    subprocess.run(command, check=True, env=env)
    header = (
        "# Example sweep: six checkpoints of the tiny model's adapter\n\n"
        "Made by `.venv/bin/python tools/sweep_example.py` (see the README, "
        '"Sweeping checkpoints"): `swayhost sweep` over `checkpoint-25` ... `checkpoint-800`, '
        "each the tiny adapter with its LoRA B scaled by step/800. "
        "Plot: [sweep-example.png](sweep-example.png).\n\n"
    )
    (DOCS / "sweep-example.md").write_text(header + (out / "summary.md").read_text())
    shutil.copyfile(out / "summary.png", DOCS / "sweep-example.png")
    print(f"wrote {DOCS / 'sweep-example.md'} and {DOCS / 'sweep-example.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
