"""Long work says what it is doing: a spinner on a terminal, plain lines otherwise.

The mistake here is the user's only in thinking a silent command hung: a
first ``make demo`` or ``environment:`` run used to print nothing while it
built an env, a model and a worker.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from swayhost.console import step

from tests.mistakes.test_cli import swayhost

DONE = re.compile(r": done in \d+\.\ds$")


def test_building_an_env_says_so_when_piped(tmp_path: Path, home: dict[str, str]) -> None:
    config = tmp_path / "swayhost.yaml"
    config.write_text("workers:\n  dummy:\n    environment: {inherit: true}\n", encoding="utf-8")
    out = swayhost("env", "create", env={**home, "SWAYHOST_CONFIG": str(config)})
    assert out.returncode == 0, out.stderr
    started, done = out.stderr.strip().splitlines()
    assert re.fullmatch(
        r"swayhost: building environment 'dummy' \[[0-9a-f]{16}\] \(.*workers\.dummy\.environment\)"
        r" \(once; log: .*\.log\)\.\.\.",
        started,
    ), started
    assert done.startswith(started.removesuffix("...")) and DONE.search(done), done


def test_the_demo_says_what_it_does_when_piped(home: dict[str, str]) -> None:
    out = swayhost("demo", "--kind", "dummy", env=home)
    assert out.returncode == 0, out.stderr
    lines = out.stderr.strip().splitlines()
    assert lines[0] == "swayhost: starting the dummy worker..."
    assert lines[1].startswith("swayhost: starting the dummy worker: done in")
    assert lines[2] == "swayhost: scoring base, fine-tuned, scaled and null views..."
    assert DONE.search(lines[3]) and len(lines) == 4
    assert "Adapter mean KL" in out.stdout  # the report itself stays on stdout


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_a_step_shows_a_status_then_one_line() -> None:
    screen = _Terminal()
    with step("building the tiny model", stream=screen):
        pass
    shown = screen.getvalue()
    assert "swayhost:" not in shown  # the plain lines are for logs, not terminals
    assert DONE.search(shown.strip().splitlines()[-1].replace("building the tiny model", ""))


def test_a_failed_step_does_not_say_done() -> None:
    log = io.StringIO()
    try:
        with step("building", stream=log):
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert log.getvalue() == "swayhost: building...\n"


def test_sway_loading_a_host_backend_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """``sway run`` with ``entry_point: swayhost.sway:MLX``: a first run provisions and converts."""
    from dlm_sway.backends import build as sway_build
    from dlm_sway.core.model import ModelSpec as SwayModelSpec
    from swayhost import sway as host_sway

    from tests.helpers import spawn_dummy

    monkeypatch.setattr(host_sway, "build", lambda spec: spawn_dummy())
    spec = SwayModelSpec(
        kind="custom", entry_point="swayhost.sway:MLX", base="toy", adapter=tmp_path
    )
    backend = sway_build(spec)
    backend.cache_identity()  # waits for the worker, which starts in the background
    backend.close()
    started, done = capsys.readouterr().err.strip().splitlines()
    assert started == "swayhost: starting the mlx worker and loading toy..."
    assert done.startswith(started.removesuffix("...")) and DONE.search(done)
