"""``make bench`` keeps working: its ``--quick`` path runs end to end on the tiny model.

Very few repetitions and no timing assertions (the machine is shared and
noisy): only that every sweep and every row is there, every figure is a
finite positive number, sway's in-process cache never served a timed call,
the Markdown opens with the goals table, and the plot is a real PNG. The
outputs go to a temporary folder, never into ``bench/results``.
"""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from swayworker.hf.tiny import TinyModel

pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("dlm_sway.backends.hf")
pytest.importorskip("matplotlib")

from bench.__main__ import build_parser, config_from, default_out, main, write_outputs
from bench.calls import OPS
from bench.config import quick_config
from bench.figures import finite_positive
from bench.goals import goal_rows
from bench.models import describe
from bench.progress import Steps
from bench.report import sections, to_markdown
from bench.run import run
from bench.sweeps import KINDS

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_size(path: Path) -> tuple[int, int]:
    """Width and height from the IHDR chunk, after checking the signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


@pytest.mark.slow
@pytest.mark.timeout(900)  # a whole quick run, `sway run` pairs and worker kills included
def test_quick_bench_reports_every_sweep_and_writes_markdown_and_png(
    tiny_model: TinyModel, tmp_path: Path
) -> None:
    model = describe("tiny", tiny_model.base_dir, tiny_model.adapter_dir)
    report = run(quick_config(), [model], Steps())

    assert finite_positive(report)
    (result,) = report.models
    assert [(t.view, t.op) for t in result.ops] == [(v, op) for v in ("ft", "base") for op in OPS]
    assert [s.kind for s in result.sweeps] == list(KINDS)
    for sweep in result.sweeps:
        assert len(sweep.points) >= 2, sweep.kind.key
    assert result.sway_cache_hits == 0
    assert report.imports.imports_torch is False
    assert result.cache.hit_ms < result.cache.round_trip_ms
    # The end-to-end `sway run` pair and the restart figures were really measured.
    assert len(result.sway_run.host_s) == len(result.sway_run.in_process_s) == 1
    restart = report.restart
    assert len(restart.cold_s) == len(restart.spawn_s) == len(restart.standby_s) == 2
    assert 0 < restart.template_uss <= restart.template_rss
    # The real-size row, measured the same way on the matrix's tiny Qwen2 here.
    real = report.real_size
    assert real.model.name == "qwen2-tiny"
    assert [row.op for row in real.rows] == ["logprob_of", "rolling_logprob", "next_token_dist"]
    goals = {goal.goal for goal in goal_rows(report)}
    assert "`sway run` of a fixed suite, whole command: host / in process" in goals
    assert {
        "SIGKILL → next good call, no standby (worker template, the default)",
        "SIGKILL → next good call, warm standby",
    } <= goals

    markdown_path = tmp_path / "out" / "bench.md"
    png = write_outputs(report, markdown_path)
    markdown = markdown_path.read_text(encoding="utf-8")
    first_table = markdown.index("\n## ")
    assert markdown[first_table:].startswith("\n## Goals")
    for goal in goal_rows(report):
        assert goal.goal in markdown
        assert goal.passed is not None
    assert "PASS" in markdown or "MISS" in markdown
    for section in sections(report):
        assert f"## {section.title}" in markdown
        assert section.rows
    assert to_markdown(report, plot_name=png.name).count(f"]({png.name})") == 1

    width, height = _png_size(png)
    assert png == tmp_path / "out" / "bench.png"
    assert width > 0 and height > 0 and png.stat().st_size > 10_000
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["bench.md", "bench.png"]


def test_cli_flags_pick_the_run() -> None:
    quick = config_from(build_parser().parse_args(["--quick"]))
    assert quick.quick and quick.models == ("tiny",)
    full = config_from(build_parser().parse_args([]))
    assert full.models == ("tiny", "50m") and not full.quick
    one = config_from(build_parser().parse_args(["--model", "50m", "--rounds", "2"]))
    assert one.models == ("50m",) and one.plan("50m").rounds == 2
    assert full.threads == 0  # torch's default, as users run it
    assert config_from(build_parser().parse_args(["--threads", "1"])).threads == 1
    assert default_out(0).name == "bench.md"
    assert default_out(1).name == "bench-threads-1.md"
    with pytest.raises(SystemExit):
        main(["--model", "huge"])
