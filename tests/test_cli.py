"""The swayhost CLI: subcommands, --json output, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys


def swayhost(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "swayhost", *args], capture_output=True, text=True, timeout=120
    )


def test_no_command_prints_help_and_exits_2() -> None:
    out = swayhost()
    assert out.returncode == 2 and "COMMAND" in out.stdout


def test_describe_json() -> None:
    out = swayhost("describe", "--kind", "dummy", "--json")
    assert out.returncode == 0, out.stderr
    described = json.loads(out.stdout)
    assert described["worker_kind"] == "dummy"
    assert "ScalableDifferentialBackend" in described["capabilities"]["protocols"]


def test_demo_on_dummy_reports_every_section() -> None:
    out = swayhost("demo", "--kind", "dummy", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert len(report["prompts"]) == 4
    lams = [lam for lam, _ in report["ablation"]]
    kls = [kl for _, kl in report["ablation"]]
    assert lams[0] == 0.0 and kls[0] == 0.0 and kls == sorted(kls)
    assert report["z_score"] > 2


def test_worker_start_failure_exits_3() -> None:
    out = swayhost("describe", "--", sys.executable, "-c", "import sys; sys.exit(4)")
    assert out.returncode == 3
    assert "exited with code 4" in out.stderr
