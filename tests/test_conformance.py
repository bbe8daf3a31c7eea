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
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dlm_sway.core.errors import ProbeError as SwayProbeError
from rich.console import Console
from swayhost.conformance import report
from swayhost.conformance.checks import CHECKS
from swayhost.conformance.checks.refusals import (
    BAD_ARGUMENT,
    EMPTY_COMPLETION,
    NOT_LOADED,
    REFUSALS,
    UNSUPPORTED,
    Refusal,
    error_problems,
)
from swayhost.conformance.result import CheckResult, Report
from swayhost.translate import rebuild_exception
from swayworker.errors import classify
from swayworker.hf.tiny import MAX_POSITIONS, VOCAB_SIZE, TinyModel
from swayworker.hf.tiny_spm import SPM_VOCAB_SIZE
from swayworker.results import ProbeError

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


@dataclass(frozen=True)
class Gap:
    """A worker mistake the kit once let through, and the failure it now reports."""

    flaw: str
    failing: frozenset[str]
    check: str
    message: str
    """The check's whole detail, as a regular expression (the variable parts as patterns)."""


ERRORS_BUT_NOT_LOADED = frozenset(
    {"batch", *(name for name in ALL_CHECKS if name.startswith("error:"))}
)
FLOAT64 = (
    "8 logprobs for 5 tokens; expected 4 (token i given tokens < i, none for the first); "
    "logprobs has 8 bytes per value: arrays are float32 little-endian (4 bytes per logprob), "
    "not float64"
)
SAME_IDENTITY = (
    "' in another; it must be the same in every process that loads the same spec (no pid, "
    "time or temp path in it): the host refuses a restarted worker whose identity changed, "
    "and caches and journals are keyed on it"
)
GAPS = [
    Gap(
        "unstable-identity",
        frozenset({"cache-identity"}),
        "cache-identity",
        re.escape("cache_identity is 'dummy:")
        + r"\d+"
        + re.escape("' in one process and 'dummy:")
        + r"\d+"
        + re.escape(SAME_IDENTITY),
    ),
    Gap(
        "probe-as-value-error",
        frozenset({"batch", "error:empty-completion"}),
        "error:empty-completion",
        re.escape(
            "empty completion: sway-error-type is 'builtins.ValueError'; sway raises "
            "dlm_sway.core.errors.ProbeError for this, and the host rebuilds that class only "
            "when it is named: send 'dlm_sway.core.errors.ProbeError'"
        ),
    ),
    Gap(
        "unqualified-error-type",
        ERRORS_BUT_NOT_LOADED | {"resident-adapters"},  # its refusal of an adapter too
        "error:no-view",
        re.escape(
            "request without a view: sway-error-type 'ValueError' is not a qualified class "
            "name; send 'builtins.ValueError'"
        ),
    ),
    Gap(
        "attrs-not-json",
        frozenset({"batch", "error:empty-completion"}),
        "error:empty-completion",
        re.escape(
            "empty completion: sway-error-attrs is not JSON (Expecting value): "
            """'probe=logprob_of'; send {"probe": "logprob_of"}"""
        ),
    ),
    Gap(
        "no-loaded-spec",
        frozenset({"loaded-spec"}),
        "loaded-spec",
        re.escape(
            "Describe after Load has no loaded_spec; set it to the ModelSpec of the last "
            "successful Load (a host attaching to a running worker learns what it serves from it)"
        ),
    ),
    Gap(
        "kind-changes",
        frozenset({"worker-kind"}),
        "worker-kind",
        re.escape(
            "worker_kind changes: 'broken-kind-changes' before Load, 'broken-kind-changes-loaded' "
            "in Load's answer, 'broken-kind-changes-loaded' after Load; it names the worker, not "
            "the model, so report one value from the first Describe on (the host keys its logs "
            "and records on it)"
        ),
    ),
    Gap(
        "echo-prompt",
        frozenset({"generate"}),
        "generate",
        "; ".join(
            re.escape(
                f"{view}/generate(max_new_tokens=1) returned 'The sky is {word}', 3 tokens by the "
                "worker's own tokenizer (rolling_logprob of prompt + text, less the prompt's); "
                "at most 1 (it starts with the prompt); return only the new text"
            )
            for view, word in (("base", "w44"), ("ft", "w40"))
        ),
    ),
    Gap(
        "too-many-tokens",
        frozenset({"generate"}),
        "generate",
        "; ".join(
            re.escape(
                f"{view}/generate(max_new_tokens=1) returned '{words}', 2 tokens by the worker's "
                "own tokenizer (rolling_logprob of prompt + text, less the prompt's); at most 1"
            )
            for view, words in (("base", "w44 w11 w38"), ("ft", "w40 w26 w5"))
        ),
    ),
    Gap(
        "float64-logprobs",
        frozenset({"operations", "distribution"}),
        "operations",
        "; ".join(
            re.escape(f"{view}/rolling_logprob: {FLOAT64}")
            for view in ("base", "ft", "scaled(0.5)", "null(7, init_scale=0.02, rank=1.0)")
        ),
    ),
    Gap(
        "big-endian-ids",
        frozenset({"distribution"}),
        "distribution",
        re.escape("base/next_token_dist: token ids outside [0, 64): [")
        + r"\d+(, \d+){7}"
        + re.escape(
            "]; read as big-endian they are [44, 14, 28, 38, 23, 62, 34, 45]: write token_ids "
            "as int64 little-endian; "
        )
        + ".*",
    ),
]


@pytest.mark.parametrize("gap", GAPS, ids=[gap.flaw for gap in GAPS])
def test_kit_fails_each_gap_the_host_relies_on(gap: Gap) -> None:
    run = conformance("--", sys.executable, str(FAKE_WORKERS / "broken.py"), gap.flaw)
    assert run.returncode == 1 and not run.report["passed"]
    assert run.named("fail") == gap.failing, run.report["checks"]
    assert re.fullmatch(gap.message, run.detail(gap.check)), run.detail(gap.check)


def test_a_long_worker_message_is_cut_and_shown_once() -> None:
    """A worker refusing every request with a 4016-character message (a wrong limit)."""
    run = conformance("--", sys.executable, str(FAKE_WORKERS / "broken.py"), "long-errors")
    details = [c["detail"] for c in run.report["checks"]]
    assert sum(d.count("this model accepts at most 2 tokens") for d in details) == 1
    assert "token 14 is 'w14'… [3716 more characters]" in run.detail("operations")
    assert "[the same 4016-character message as above]" in run.detail("operations")
    assert "[the same 4016-character message as in 'operations']" in run.detail("distribution")


def test_a_refused_handshake_names_the_command_and_leaves_no_folder(tmp_path: Path) -> None:
    command = [sys.executable, str(FAKE_WORKERS / "rejected_handshake.py")]
    run = conformance("--", *command, env={**os.environ, "TMPDIR": str(tmp_path)})
    assert run.status("cookie") == "pass"
    assert run.detail("handshake").startswith(
        "worker 'rejected_handshake.py' printed an invalid handshake line: handshake version "
        "2 is not supported (this host speaks 1); upgrade the older of host and worker."
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("exception_type", "attrs", "refusal", "problems"),
    [
        ("swayworker.errors.UnsupportedOperation", "{}", UNSUPPORTED, []),
        ("builtins.NotImplementedError", "{}", UNSUPPORTED, []),
        (
            "builtins.KeyError",
            "{}",
            UNSUPPORTED,
            [
                "sway-error-type is 'builtins.KeyError', so the host raises KeyError where sway "
                "expects NotImplementedError; send 'builtins.NotImplementedError'"
            ],
        ),
        (
            "builtins.NoSuchError",
            "{}",
            NOT_LOADED,
            [
                "sway-error-type 'builtins.NoSuchError' names no class the host knows; "
                "send 'builtins.RuntimeError'"
            ],
        ),
        (
            None,
            None,
            BAD_ARGUMENT,
            [
                "sway-error-type is absent; send 'builtins.ValueError' (the exception sway "
                "raises for this)",
                "sway-error-attrs is absent; send a JSON object: {}",
            ],
        ),
        (
            "dlm_sway.core.errors.ProbeError",
            '{"probe": ""}',
            EMPTY_COMPLETION,
            [
                """sway-error-attrs '{"probe": ""}' lacks probe: sway's ProbeError carries """
                """the probe's name, e.g. {"probe": "logprob_of"}"""
            ],
        ),
        ("dlm_sway.core.errors.ProbeError", '{"probe": "api.http"}', BAD_ARGUMENT, []),
        (
            "dlm_sway.core.errors.ProbeError",
            "{}",
            BAD_ARGUMENT,
            [
                "sway-error-attrs '{}' lacks probe: sway's ProbeError carries the probe's name, "
                """e.g. {"probe": "logprob_of"}"""
            ],
        ),
        (
            "builtins.ValueError",
            "[1]",
            BAD_ARGUMENT,
            ["sway-error-attrs is not a JSON object: '[1]'; send {}"],
        ),
    ],
)
def test_error_types_are_judged_by_the_hosts_own_rule(
    exception_type: str | None, attrs: str | None, refusal: Refusal, problems: list[str]
) -> None:
    """A worker's own class passes (the host raises its class of the reason); a builtin or
    sway class must be the one sway raises, with JSON attrs."""
    assert error_problems(exception_type, attrs, refusal) == problems


def test_the_sdk_sends_sways_probe_error_where_sway_is_not_installed() -> None:
    """The MLX env has no dlm-sway: its ProbeError stand-in still reaches callers as sway's."""
    wire = classify(ProbeError("logprob_of", "completion tokenized to zero tokens"))
    assert (wire.exception_type, json.loads(wire.attrs_json)) == (
        "dlm_sway.core.errors.ProbeError",
        {"probe": "logprob_of"},
    )
    assert error_problems(wire.exception_type, wire.attrs_json, EMPTY_COMPLETION) == []
    rebuilt = rebuild_exception(
        reason="ERROR_REASON_BAD_ARGUMENT",
        message=wire.message,
        exception_type=wire.exception_type,
        attrs_json=wire.attrs_json,
        hint="",
        worker="mlx",
    )
    assert isinstance(rebuilt, SwayProbeError) and rebuilt.probe == "logprob_of"


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


GUIDE = Path(__file__).resolve().parents[1] / "docs" / "writing-a-worker.md"


def test_the_guide_documents_every_check() -> None:
    guide = GUIDE.read_text()
    assert [name for name in ALL_CHECKS if f"`{name}`" not in guide] == []


def test_the_json_report_names_each_checks_section_of_the_guide() -> None:
    headings = re.findall(r"^#+ (.+)$", GUIDE.read_text(), flags=re.MULTILINE)
    anchors = {re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-") for h in headings}
    run = conformance("--kind", "dummy")
    sections = {c["name"]: c["section"] for c in run.report["checks"]}
    assert list(sections) == ALL_CHECKS
    nowhere = {
        name: section
        for name, section in sections.items()
        if not section.startswith("docs/writing-a-worker.md#")
        or section.partition("#")[2] not in anchors
    }
    assert nowhere == {}
    assert sections["cache-identity"] == "docs/writing-a-worker.md#4-describe-and-load"
    assert sections["error:top-k"] == "docs/writing-a-worker.md#6-errors"


def test_the_guide_prints_the_error_table_the_kit_checks() -> None:
    guide = GUIDE.read_text()

    def types(refusal: Refusal) -> str:
        return " or ".join(f"`{name}`" for name in (refusal.exception_type, *refusal.also))

    rows = [f"| {what} | `{r.reason_name}` | {types(r)} |" for what, r in REFUSALS]
    assert [row for row in rows if row not in guide] == []
