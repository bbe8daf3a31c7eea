"""The conformance kit (``swayhost conformance``): our workers pass it, broken ones fail it.

Every run is the real CLI against real worker processes, and the assertions
read its ``--json`` report, the form CI and scripts consume. The MLX worker
runs in its provisioned env, the API worker against mlx_lm.server (its own
token ids) and llama.cpp's server (echo + logprobs: every operation), both
started here on loopback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from swayhost.conformance import report
from swayhost.conformance.checks import CHECKS
from swayhost.conformance.result import CheckResult, Report
from swayworker.hf.tiny import MAX_POSITIONS, VOCAB_SIZE, TinyModel
from swayworker.hf.tiny_spm import SPM_VOCAB_SIZE

from tests.helpers import FAKE_WORKERS, plugin_pythonpath, require_node
from tests.llamacpp_fixtures import Ggufs, LlamaCpp, llama_server
from tests.plugins.node_backend import NODE_WORKER

ALL_CHECKS = [check.name for check in CHECKS]


@dataclass
class KitRun:
    returncode: int
    report: dict[str, Any]
    stderr: str

    def status(self, name: str) -> str:
        return str(self._check(name)["status"])

    def detail(self, name: str) -> str:
        return str(self._check(name)["detail"])

    def named(self, status: str) -> set[str]:
        return {c["name"] for c in self.report["checks"] if c["status"] == status}

    def _check(self, name: str) -> dict[str, Any]:
        return next(c for c in self.report["checks"] if c["name"] == name)


def conformance(*args: str, env: dict[str, str] | None = None) -> KitRun:
    """``swayhost conformance --json ARGS`` as a subprocess."""
    out = subprocess.run(
        [sys.executable, "-m", "swayhost", "conformance", "--json", *args],
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )
    try:
        parsed = json.loads(out.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"no JSON report (exit {out.returncode}):\n{out.stdout}\n{out.stderr}")
    return KitRun(out.returncode, parsed, out.stderr)


def assert_conforms(run: KitRun, skipped: set[str]) -> None:
    failures = {c["name"]: c["detail"] for c in run.report["checks"] if c["status"] == "fail"}
    assert failures == {}, failures
    assert run.returncode == 0 and run.report["passed"]
    assert [c["name"] for c in run.report["checks"]] == ALL_CHECKS
    assert run.named("skip") == skipped


def test_dummy_worker_conforms() -> None:
    run = conformance("--kind", "dummy")
    assert_conforms(run, skipped={"unimplemented"})
    assert run.report["worker_kind"] == "dummy"
    assert "top_k = vocabulary (64) gives no tail" in run.detail("distribution")


def test_a_worker_without_optional_protocols_refuses_them() -> None:
    run = conformance("--kind", "dummy", "--option", "protocols=")
    assert_conforms(run, skipped={"scaled-endpoints", "preflight", "error:null-rank-scale"})
    assert "refused the scaled view, the null view, Preflight" in run.detail("unimplemented")


def test_custom_worker_conforms() -> None:
    env = {**os.environ, "PYTHONPATH": plugin_pythonpath()}
    run = conformance("--kind", "custom", "--entry-point", "user_backends:ToyModel", env=env)
    assert_conforms(run, skipped={"unimplemented"})


def test_custom_worker_serving_sways_dummy_fails_only_on_its_canned_distributions() -> None:
    """sway's own dummy backend is canned test data, not a model: its ft top-k
    ascends, and its scaled/null views neither renormalise nor keep scaled(1)
    equal to ft. Everything the worker itself does conforms."""
    env = {**os.environ, "PYTHONPATH": plugin_pythonpath()}
    run = conformance(
        "--kind", "custom", "--entry-point", "user_backends:SwayDummy", "--prompt", "q", env=env
    )
    assert run.returncode == 1
    assert run.named("fail") == {"distribution", "scaled-endpoints"}
    distribution = run.detail("distribution")
    assert "ft/next_token_dist: top-k logprobs are not in descending order" in distribution
    assert "scaled(0.5)/next_token_dist: exp(top-k) sums to" in distribution
    assert "scaled(1.0)/next_token_dist differs from ft" in run.detail("scaled-endpoints")


@pytest.mark.slow
def test_hf_worker_conforms(tiny_model: TinyModel) -> None:
    run = conformance(
        "--kind",
        "hf",
        "--base",
        str(tiny_model.base_dir),
        "--adapter",
        str(tiny_model.adapter_dir),
        "--spec-json",
        '{"dtype": "fp32", "device": "cpu"}',
    )
    assert_conforms(run, skipped={"unimplemented"})
    # The worker enforces the context length it advertises.
    assert "(limit 256 tokens)" in run.detail("error:oversized-prompt")


@pytest.mark.slow
@pytest.mark.timeout(900)  # a first run builds the MLX env
def test_mlx_worker_conforms(tiny_model: TinyModel, mlx_python: Path, tmp_path: Path) -> None:
    run = conformance(
        "--kind",
        "mlx",
        "--base",
        str(tiny_model.base_dir),
        "--adapter",
        str(tiny_model.adapter_dir),
        "--spec-json",
        '{"dtype": "fp32", "device": "cpu"}',
        "--option",
        f"adapter_cache_dir={tmp_path}",
        "--",
        str(mlx_python),
        "-m",
        "swayworker.mlx",
    )
    assert_conforms(run, skipped={"unimplemented"})
    assert run.report["worker_kind"] == "mlx"
    # The kit caught it computing past the context it advertises; now it refuses.
    assert "(limit 256 tokens)" in run.detail("error:oversized-prompt")


@pytest.mark.slow
@pytest.mark.timeout(900)  # a first run builds the MLX env
def test_api_worker_conforms_against_mlx_lm_server(mlx_server: str, tiny_model: TinyModel) -> None:
    """mlx_lm.server sends its own token ids, so every check applies and passes. It does
    not enforce the model's context, so the worker is told it (as a user would)."""
    run = conformance(
        "--kind",
        "api",
        "--base",
        str(tiny_model.base_dir),
        "--endpoint",
        mlx_server,
        "--option",
        f"vocab_size={VOCAB_SIZE}",
        "--option",
        f"max_prompt_tokens={MAX_POSITIONS}",
    )
    # No adapter behind an endpoint (scaled, null), and no echo on mlx_lm.server (logprob_of).
    assert_conforms(
        run, skipped={"scaled-endpoints", "error:null-rank-scale", "error:empty-completion"}
    )
    assert "(limit 256 tokens)" in run.detail("error:oversized-prompt")
    assert "base/logprob_of, base/rolling_logprob" in run.detail("unimplemented")


WHOLE_VOCAB_COLLAPSES = (
    f"base/next_token_dist(top_k={SPM_VOCAB_SIZE}): 235 entries for the whole vocabulary; "
    f"ft/next_token_dist(top_k={SPM_VOCAB_SIZE}): 235 entries for the whole vocabulary"
)
"""llama-cpp-python keys its alternatives by decoded text, so the 256 byte-fallback tokens of
the SentencePiece vocabulary (decoding to '' or to a one-letter piece's text) collapse: asked
for all 400, it sends 235 and the rest of the mass is left to the tail. No worker can get the
lost entries back from such a server; everything else conforms."""


@pytest.mark.slow
@pytest.mark.timeout(1800)  # a first run compiles llama.cpp
def test_api_worker_conforms_against_llama_cpp_but_for_its_text_keyed_top_k(
    llama_cpp: LlamaCpp, spm_ggufs: Ggufs, tmp_path: Path
) -> None:
    with llama_server(llama_cpp, spm_ggufs.base, tmp_path / "server.log") as url:
        run = conformance(
            "--kind",
            "api",
            "--base",
            "tiny",
            "--endpoint",
            url,
            "--option",
            f"vocab_size={SPM_VOCAB_SIZE}",
        )
    failures = {c["name"]: c["detail"] for c in run.report["checks"] if c["status"] == "fail"}
    assert failures == {"distribution": WHOLE_VOCAB_COLLAPSES}, failures
    assert "the server sent 235: it keys them by their text" in run.stderr  # the user is told
    # No adapter behind an endpoint: the scaled and null views are not advertised.
    assert run.named("skip") == {"scaled-endpoints", "error:null-rank-scale"}
    assert "refused the scaled view, the null view with UNIMPLEMENTED" in run.detail(
        "unimplemented"
    )


def test_node_worker_conforms() -> None:
    require_node()
    run = conformance("--", "node", str(NODE_WORKER))
    assert_conforms(run, skipped={"unimplemented"})
    assert run.report["worker_kind"] == "node-ngram"


BROKEN = [
    ("wrong-tail", "distribution", "so the distribution has mass"),
    ("unsorted-top-k", "distribution", "top-k logprobs are not in descending order"),
    ("nondeterministic", "determinism", "base/logprob_of: the same request twice gave"),
    ("wrong-error-code", "error:oversized-prompt", "INTERNAL (ERROR_REASON_INTERNAL)"),
]


@pytest.mark.parametrize(("flaw", "check", "message"), BROKEN)
def test_kit_catches_a_broken_worker(flaw: str, check: str, message: str) -> None:
    run = conformance("--", sys.executable, str(FAKE_WORKERS / "broken.py"), flaw)
    assert run.returncode == 1 and not run.report["passed"]
    assert run.named("fail") == {check}, run.report["checks"]
    assert message in run.detail(check)


def test_a_worker_that_dies_mid_run_fails_that_check_and_the_rest_say_why() -> None:
    run = conformance("--kind", "dummy", "--option", "crash_on=boom", "--prompt", "boom")
    assert run.returncode == 1
    assert "the worker exited with signal SIGKILL during 'operations'" in run.detail("operations")
    assert run.status("distribution") == "skip"
    assert "during 'operations'" in run.detail("distribution")
    assert run.status("parent-death") == "pass"  # it starts a worker of its own


def test_readable_output_names_each_check_and_the_verdict() -> None:
    console = Console(record=True, width=200)
    outcome = Report(
        worker=["node", "worker.js"],
        worker_kind="node-ngram",
        results=[
            CheckResult("health", "health", "pass", "SERVING", 0.01),
            CheckResult("distribution", "dist", "fail", "ft: [1] not descending", 0.2),
            CheckResult("preflight", "preflight", "skip", "not advertised", 0.0),
        ],
    )
    for result in outcome.results:
        report.print_result(console, result)
    report.print_summary(console, outcome)
    text = console.export_text()
    assert "✓ pass  health  SERVING" in text
    assert "✗ FAIL  distribution  ft: [1] not descending" in text
    assert "- skip  preflight  not advertised" in text
    assert "DOES NOT CONFORM (node-ngram): 1 passed, 1 failed, 1 skipped" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--spec-json", "{"], "--spec-json is not valid JSON"),
        (["--spec-json", '{"colour": "red"}'], "unknown fields ['colour']"),
        (["--option", "novalue"], "--option must be KEY=VALUE"),
    ],
)
def test_bad_spec_arguments_exit_2(args: list[str], message: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "swayhost", "conformance", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2 and message in out.stderr


def test_the_guide_documents_every_check() -> None:
    guide = (Path(__file__).resolve().parents[1] / "docs" / "writing-a-worker.md").read_text()
    assert [name for name in ALL_CHECKS if f"`{name}`" not in guide] == []
