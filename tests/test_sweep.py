"""``swayhost sweep``: sway's suite per adapter, equal to ``sway run``; resume; bad adapters.

The tiny model's adapter is turned into checkpoints of a pretend run
(``swayworker.hf.checkpoints``); the real CLI sweeps them in a subprocess,
and each adapter's report must equal the real ``sway run`` of that adapter
in process (sway's own HF backend, the reference). A sweep killed midway
and run again resumes; a wrong-shaped and a corrupt adapter fail alone.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from swayhost.sweep import expand_adapters, label_adapters, natural_key
from swayworker.hf.checkpoints import build_checkpoints, build_corrupt, build_wrong_shape
from swayworker.hf.tiny import TinyModel

from tests.test_sway_run import SWAY, differences

ROOT = Path(__file__).resolve().parents[1]
STEPS = (100, 1000, 200)
"""Written out of order on purpose: the sweep sorts them naturally."""
SUITE: list[dict[str, Any]] = [
    {"name": "shift", "kind": "delta_kl", "prompts": ["The river ran", "In the town"]},
    {
        "name": "ablation",
        "kind": "adapter_ablation",
        "prompts": ["The river ran"],
        "lambdas": [0.0, 0.5, 1.0],
    },
    {
        "name": "preference",
        "kind": "preference_flip",
        "triples": [
            {"prompt": "The baker sold", "chosen": " warm bread", "rejected": " cold stones"},
            {"prompt": "The dog barked", "chosen": " near the bridge", "rejected": " at noon"},
        ],
    },
]


def sway_yaml(tiny: TinyModel, ft: dict[str, str], adapter: Path) -> dict[str, Any]:
    model = {"base": str(tiny.base_dir), "dtype": "fp32", "device": "cpu"}
    return {
        "version": 1,
        "models": {"base": {"kind": "hf", **model}, "ft": {**ft, **model, "adapter": str(adapter)}},
        "defaults": {"seed": 0, "top_k": 32},
        "suite": SUITE,
    }


@dataclass(frozen=True)
class Setup:
    root: Path
    spec: Path
    checkpoints: list[Path]
    wrong_shape: Path
    corrupt: Path
    env: dict[str, str]


@pytest.fixture(scope="module")
def setup(tiny_model: TinyModel, tmp_path_factory: pytest.TempPathFactory) -> Setup:
    root = tmp_path_factory.mktemp("sweep")
    runs = root / "run"
    runs.mkdir()
    checkpoints = build_checkpoints(tiny_model.adapter_dir, runs, STEPS)
    spec = root / "sway.yaml"
    hosted = sway_yaml(
        tiny_model, {"kind": "custom", "entry_point": "swayhost.sway:HF"}, tiny_model.adapter_dir
    )
    spec.write_text(yaml.safe_dump(hosted), encoding="utf-8")
    env = {
        **{k: v for k, v in os.environ.items() if k != "SWAYHOST_CONFIG"},
        "PYTHONPATH": os.pathsep.join([str(ROOT / "host"), str(ROOT / "workers"), str(ROOT)]),
        "XDG_CACHE_HOME": str(root / "cache"),
        "XDG_CONFIG_HOME": str(root / "config"),
    }
    return Setup(
        root=root,
        spec=spec,
        checkpoints=sorted(checkpoints, key=lambda p: natural_key(str(p))),
        wrong_shape=build_wrong_shape(tiny_model.adapter_dir, root / "bad" / "wrong-shape"),
        corrupt=build_corrupt(tiny_model.adapter_dir, root / "bad" / "corrupt"),
        env=env,
    )


def sweep(setup: Setup, out: Path, *adapters: str, extra: tuple[str, ...] = ()) -> Any:
    argv = [sys.executable, "-m", "swayhost", "sweep", str(setup.spec), "--out", str(out)]
    argv += ["--adapter", *adapters, *extra]
    return subprocess.run(argv, capture_output=True, text=True, env=setup.env, timeout=600)


def report(out: Path, label: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((out / label / "report.json").read_text())
    return loaded


@pytest.fixture(scope="module")
def references(tiny_model: TinyModel, setup: Setup) -> dict[str, dict[str, Any]]:
    """``sway run`` in process (sway's own HF backend) for each checkpoint, by label."""
    found = {}
    for checkpoint in setup.checkpoints:
        folder = setup.root / "reference" / checkpoint.name
        folder.mkdir(parents=True)
        spec = folder / "sway.yaml"
        spec.write_text(yaml.safe_dump(sway_yaml(tiny_model, {"kind": "hf"}, checkpoint)))
        argv = [str(SWAY), "run", str(spec), "--json", str(folder / "report.json")]
        run = subprocess.run(argv, capture_output=True, text=True, env=setup.env, timeout=600)
        assert run.returncode == 0, run.stderr[-3000:]
        found[checkpoint.name] = json.loads((folder / "report.json").read_text())
    return found


@pytest.fixture(scope="module")
def swept(setup: Setup) -> tuple[Path, Any]:
    """One clean sweep of the checkpoints, by glob, with ``--json``."""
    out = setup.root / "swept"
    run = sweep(setup, out, str(setup.checkpoints[0].parent / "checkpoint-*"), extra=("--json",))
    return out, run


# -- end to end ------------------------------------------------------------------


@pytest.mark.slow
def test_each_adapters_report_equals_sway_run(
    swept: tuple[Path, Any], references: dict[str, dict[str, Any]]
) -> None:
    out, run = swept
    assert run.returncode == 0, run.stderr[-3000:]
    for label, reference in references.items():
        got = report(out, label)
        assert got["adapter_id"] == str(reference["adapter_id"])
        problems, _ = differences(reference, got)
        assert not problems, f"{label}: " + "\n".join(problems[:20])
        assert (out / label / "report.md").read_text().startswith("#")


@pytest.mark.slow
def test_summary_table_plot_and_json_follow_natural_order(
    setup: Setup, swept: tuple[Path, Any]
) -> None:
    out, run = swept
    summary = json.loads(run.stdout)
    assert summary == json.loads((out / "summary.json").read_text())
    labels = [row["label"] for row in summary["adapters"]]
    assert labels == ["checkpoint-100", "checkpoint-200", "checkpoint-1000"]
    assert summary["probes"] == ["shift", "ablation", "preference"]
    assert [row["status"] for row in summary["adapters"]] == ["done"] * 3
    assert summary["failed"] == 0
    for row in summary["adapters"]:
        probes = {p["name"]: p for p in report(out, row["label"])["probes"]}
        assert row["scores"] == {name: p["score"] for name, p in probes.items()}
        assert row["calls"]["computed"] > 0
    table = (out / "summary.md").read_text().splitlines()
    assert table[0] == "| adapter | overall | shift | ablation | preference |"
    assert [line.split(" | ")[0] for line in table[2:5]] == [f"| {label}" for label in labels]
    assert (out / "summary.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    # progress: one line per adapter started and finished, in a pipe
    assert run.stderr.count(": running (") == 3
    assert "[3/3]" in run.stderr


# -- resume ---------------------------------------------------------------------


@pytest.mark.slow
def test_an_interrupted_sweep_resumes_and_gives_the_same_reports(
    setup: Setup, swept: tuple[Path, Any]
) -> None:
    out = setup.root / "interrupted"
    argv = [sys.executable, "-m", "swayhost", "sweep", str(setup.spec), "--out", str(out)]
    argv += ["--adapter", *map(str, setup.checkpoints)]
    with subprocess.Popen(argv, env=setup.env, stderr=subprocess.PIPE, text=True) as proc:
        first = out / "checkpoint-100" / "report.json"
        deadline = time.monotonic() + 300
        while not first.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert first.exists(), "the first adapter never finished"
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-3000:]
    assert "sweep interrupted" in stderr and "Run the same command again to resume" in stderr
    assert not (out / "checkpoint-1000" / "report.json").exists()

    rerun = sweep(setup, out, *map(str, setup.checkpoints), extra=("--json",))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    rows = {row["label"]: row for row in json.loads(rerun.stdout)["adapters"]}
    assert rows["checkpoint-100"]["status"] == "resumed"
    assert rows["checkpoint-1000"]["status"] == "done"
    assert "already done" in rerun.stderr
    for label in rows:
        problems, _ = differences(report(swept[0], label), report(out, label))
        assert not problems, f"{label}: " + "\n".join(problems[:20])


@pytest.mark.slow
def test_an_adapter_without_its_report_is_scored_again_from_its_journal(
    setup: Setup, swept: tuple[Path, Any]
) -> None:
    out = setup.root / "journaled"
    shutil.copytree(swept[0], out)
    (out / "checkpoint-200" / "report.json").unlink()  # as if killed before writing it
    rerun = sweep(setup, out, *map(str, setup.checkpoints), extra=("--json",))
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    rows = {row["label"]: row for row in json.loads(rerun.stdout)["adapters"]}
    assert [rows[k]["status"] for k in sorted(rows)] == ["resumed", "resumed", "done"]
    again = rows["checkpoint-200"]
    assert again["calls"]["computed"] == 0, "every call should come from the journal"
    assert again["calls"]["journal_hits"] > 0
    problems, _ = differences(report(swept[0], "checkpoint-200"), report(out, "checkpoint-200"))
    assert not problems, "\n".join(problems[:20])


# -- bad adapters -----------------------------------------------------------------


@pytest.mark.slow
def test_bad_adapters_fail_alone_with_their_paths(setup: Setup, swept: tuple[Path, Any]) -> None:
    out = setup.root / "with-bad"
    good = [setup.checkpoints[0], setup.checkpoints[-1]]
    adapters = [good[0], setup.wrong_shape, setup.corrupt, good[1]]
    run = sweep(setup, out, *map(str, adapters), extra=("--json",))
    assert run.returncode == 1, run.stderr[-3000:]
    summary = json.loads(run.stdout)
    rows = {row["adapter"]: row for row in summary["adapters"]}
    assert summary["failed"] == 2
    assert "size mismatch" in rows[str(setup.wrong_shape)]["error"]
    for bad in (setup.wrong_shape, setup.corrupt):
        assert rows[str(bad)]["status"] == "failed"
        assert str(bad) in rows[str(bad)]["error"]
        assert str(bad) in run.stderr
        assert not (out / bad.name / "report.json").exists()
    for adapter in good:
        assert rows[str(adapter)]["status"] == "done"
        problems, _ = differences(report(swept[0], adapter.name), report(out, adapter.name))
        assert not problems, f"{adapter.name}: " + "\n".join(problems[:20])
    assert "failed" in (out / "summary.md").read_text()


# -- usage errors, fast --------------------------------------------------------------


def test_a_glob_matching_nothing_is_a_usage_error(setup: Setup, tmp_path: Path) -> None:
    run = sweep(setup, tmp_path / "out", str(tmp_path / "nothing-*"))
    assert run.returncode == 2
    assert f"--adapter '{tmp_path}/nothing-*' matches nothing" in run.stderr
    assert not (tmp_path / "out").exists()


def test_an_out_folder_of_another_suite_is_refused(setup: Setup, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "spec.sha256").write_text("0" * 64 + "\n")
    run = sweep(setup, out, str(setup.checkpoints[0]))
    assert run.returncode == 2
    assert f"{out} holds a sweep of another suite than {setup.spec}'s" in run.stderr
    assert "Give another --out, or delete the folder" in run.stderr
    assert sorted(p.name for p in out.iterdir()) == ["spec.sha256"], "nothing ran"


def _sweep_spec(
    setup: Setup, tmp_path: Path, spec: dict[str, Any]
) -> subprocess.CompletedProcess[str]:
    """``swayhost sweep`` of ``spec`` (written to tmp_path) over the first checkpoint."""
    path = tmp_path / "sway.yaml"
    path.write_text(yaml.safe_dump(spec))
    argv = [sys.executable, "-m", "swayhost", "sweep", str(path), "--out", str(tmp_path / "o")]
    return subprocess.run(
        [*argv, "--adapter", str(setup.checkpoints[0])],
        capture_output=True,
        text=True,
        env=setup.env,
        timeout=120,
    )


def test_a_spec_sway_rejects_is_a_usage_error_with_sways_words(
    setup: Setup, tmp_path: Path
) -> None:
    spec = yaml.safe_load(setup.spec.read_text())
    spec["suite"][0]["kind"] = "delta_kll"
    run = _sweep_spec(setup, tmp_path, spec)
    assert run.returncode == 2
    assert "delta_kll" in run.stderr and run.stderr.startswith("error: ")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"models": {"ft": {"kind": "api", "base": "m", "endpoint": "http://127.0.0.1:9"}}},
            "swayhost sweep runs models.ft of kind hf or mlx (or custom with entry_point "
            "swayhost.sway:HF or swayhost.sway:MLX), not api",
        ),
        (
            {"defaults": {"differential": False}},
            "swayhost sweep runs the differential suite (one model, its adapter toggled); "
            "set `defaults.differential: true` in the spec",
        ),
    ],
)
def test_a_spec_the_sweep_cannot_run_is_refused(
    setup: Setup, tmp_path: Path, change: dict[str, dict[str, Any]], message: str
) -> None:
    spec = yaml.safe_load(setup.spec.read_text())
    for section, values in change.items():
        spec[section].update(values)
    run = _sweep_spec(setup, tmp_path, spec)
    assert run.returncode == 2
    assert message in run.stderr
    assert not (tmp_path / "o").exists(), "refused before anything ran"


def test_adapters_sort_naturally_and_get_unique_labels(tmp_path: Path) -> None:
    for run in ("run-a", "run-b"):
        for step in (1000, 100, 20):
            (tmp_path / run / f"checkpoint-{step}").mkdir(parents=True)
    found = expand_adapters([str(tmp_path / "run-*" / "checkpoint-*")])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == [
        "run-a/checkpoint-20",
        "run-a/checkpoint-100",
        "run-a/checkpoint-1000",
        "run-b/checkpoint-20",
        "run-b/checkpoint-100",
        "run-b/checkpoint-1000",
    ]
    labels = [a.label for a in label_adapters(found)]
    assert labels[:2] == ["run-a__checkpoint-20", "run-a__checkpoint-100"]
    assert len(set(labels)) == 6
    only_a = expand_adapters([str(tmp_path / "run-a" / "checkpoint-1*")])
    assert [a.label for a in label_adapters(only_a)] == ["checkpoint-100", "checkpoint-1000"]


def test_progress_is_a_rich_bar_on_a_terminal_and_lines_elsewhere(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from swayhost.commands import sweep as command
    from swayhost.sweep import Adapter, AdapterResult

    adapter = Adapter(Path("/runs/checkpoint-100"), "checkpoint-100")
    done = AdapterResult(adapter, "done", report={"score": {"overall": 0.5}}, seconds=1.0)
    failed = AdapterResult(adapter, "failed", error="RuntimeError: /runs/checkpoint-100: bad")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    with command._progress_for(2) as lines:
        assert type(lines) is command._LineProgress
        lines.started(adapter)
        lines.finished(done)
        lines.finished(failed)
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "sweep: checkpoint-100: running (/runs/checkpoint-100)",
        "sweep: [1/2] checkpoint-100: done in 1.0s (overall 0.500)",
        "sweep: [2/2] checkpoint-100: FAILED: RuntimeError: /runs/checkpoint-100: bad",
    ]
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    with command._progress_for(2) as bar:
        assert isinstance(bar, command._RichProgress)
        bar.started(adapter)
        bar.finished(done)
    assert "checkpoint-100: done in 1.0s (overall 0.500)" in capsys.readouterr().err
