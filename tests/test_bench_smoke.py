"""``make bench`` keeps working: its core measurement runs end to end on the tiny model.

Very few repetitions and no timing assertions (the machine is shared and
noisy): only that every row is there and every figure is a finite positive
number, and that sway's in-process cache never served a timed call.
"""

from __future__ import annotations

import pytest
from swayworker.hf.tiny import TinyModel

pytest.importorskip("torch")
pytest.importorskip("peft")
pytest.importorskip("dlm_sway.backends.hf")

from bench.measure import OPS, BenchConfig, finite_positive, measure
from bench.report import other_rows, to_markdown


@pytest.mark.slow
def test_bench_core_measurement_reports_every_row(tiny_model: TinyModel) -> None:
    config = BenchConfig(rounds=1, batch=4, block=2, warmup=1, startup_reps=1, import_reps=1)
    report = measure(str(tiny_model.base_dir), tiny_model.adapter_dir, config)

    assert tuple(t.op for t in report.ops) == OPS
    assert finite_positive(report)
    assert report.sway_cache_hits == 0
    assert report.host_imports_torch is False
    markdown = to_markdown(report)
    for op in OPS:
        assert f"| {op}" in markdown
    for name, _ in other_rows(report):
        assert name in markdown
    assert "PASS" in markdown or "MISS" in markdown
