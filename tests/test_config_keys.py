"""The host config file's worker tuning keys: cache, batching, journal, options, recovery.

``sway run`` builds ``swayhost.sway:HF`` from its entry point alone, so these
keys are a sway user's only way to tune the worker: each one must reach
``WorkerOptions``, each mistake must name the key and the fix, and the last
test follows them through sway's own loader into a running worker.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import swayhost
from dlm_sway.backends import build as sway_build
from dlm_sway.core.errors import SpecValidationError
from dlm_sway.core.model import ModelSpec as SwayModelSpec
from dlm_sway.core.scoring import NullCalibratedBackend, ScalableDifferentialBackend
from swayhost import config
from swayhost import sway as host_sway
from swayhost.errors import ConfigError
from swayhost.journal import Journal
from swayhost.policy import RecoveryPolicy
from swayhost.spec import DEFAULT_CACHE_BYTES, ModelSpec, WorkerOptions

ENTRY_POINT = "swayhost.sway:HF"


@pytest.fixture(autouse=True)
def no_user_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never read the developer's own host config file."""
    monkeypatch.delenv(config.CONFIG_ENV, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))


def _write(tmp_path: Path, section: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(f"workers:\n  hf:\n{section}", encoding="utf-8")
    return path


def _options(tmp_path: Path, section: str) -> WorkerOptions:
    return config.worker_options("hf", _write(tmp_path, section))


# -- valid values reach WorkerOptions --------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", 0),
        ("1048576", 1 << 20),
        ("'4096'", 4096),
        ("256MiB", 256 << 20),
        ("1GB", 10**9),
        ("1.5 gib", 3 << 29),
        ("64KB", 64_000),
        ("512B", 512),
    ],
)
def test_cache_bytes_takes_bytes_or_a_size(tmp_path: Path, value: str, expected: int) -> None:
    assert _options(tmp_path, f"    cache_bytes: {value}\n").cache_bytes == expected


def test_a_section_without_the_new_keys_keeps_the_defaults(tmp_path: Path) -> None:
    options = _options(tmp_path, "    startup_timeout: 30\n")
    assert options == WorkerOptions(startup_timeout=30.0)
    assert options.cache_bytes == DEFAULT_CACHE_BYTES
    assert options.journal is None and options.recovery == RecoveryPolicy()


def test_batching_keys_reach_worker_options(tmp_path: Path) -> None:
    options = _options(tmp_path, "    dynamic_batching: false\n    batch_window_s: 0.01\n")
    assert options.dynamic_batching is False
    assert options.batch_window_s == 0.01
    assert _options(tmp_path, "    batch_window_s: 0\n").batch_window_s == 0.0
    assert _options(tmp_path, "    dynamic_batching: true\n").dynamic_batching is True


def test_background_start_reaches_worker_options(tmp_path: Path) -> None:
    assert _options(tmp_path, "    startup_timeout: 30\n").background_start is True
    assert _options(tmp_path, "    background_start: false\n").background_start is False
    with pytest.raises(ConfigError, match="background_start: expected true or false"):
        _options(tmp_path, "    background_start: later\n")


def test_journal_is_relative_to_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "conf"
    (folder / "runs").mkdir(parents=True)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config_path = folder / "swayhost.yaml"
    config_path.write_text("workers: {hf: {journal: runs/hf.sqlite}}\n", encoding="utf-8")
    assert config.worker_options("hf", config_path).journal == folder / "runs" / "hf.sqlite"
    absolute = tmp_path / "abs.sqlite"
    config_path.write_text(f"workers: {{hf: {{journal: {absolute}}}}}\n", encoding="utf-8")
    assert config.worker_options("hf", config_path).journal == absolute
    monkeypatch.setenv("HOME", str(tmp_path))
    config_path.write_text("workers: {hf: {journal: ~/home.sqlite}}\n", encoding="utf-8")
    assert config.worker_options("hf", config_path).journal == tmp_path / "home.sqlite"


def test_options_are_strings_for_the_workers_load(tmp_path: Path) -> None:
    options = _options(
        tmp_path,
        "    options: {protocols: 'null,scalable', sleep_ms: 20, ratio: 0.5, flag: true,"
        " extra_body: '{\"a\": 1}'}\n",
    )
    assert options.options == {
        "protocols": "null,scalable",
        "sleep_ms": "20",
        "ratio": "0.5",
        "flag": "True",
        "extra_body": '{"a": 1}',
    }
    spec = ModelSpec(base="toy", worker=options)
    assert dict(spec.to_proto().options) == options.options


def test_recovery_takes_policy_fields_and_keeps_the_other_defaults(tmp_path: Path) -> None:
    options = _options(
        tmp_path,
        "    recovery:\n"
        "      max_restarts: 20\n"
        "      restart_window_s: 60\n"
        "      backoff_jitter: 0.25\n"
        "      standby: true\n",
    )
    assert options.recovery == RecoveryPolicy(
        max_restarts=20, restart_window_s=60.0, backoff_jitter=0.25, standby=True
    )
    assert isinstance(options.recovery.restart_window_s, float)
    assert _options(tmp_path, "    recovery: never\n").recovery == RecoveryPolicy.never()
    assert _options(tmp_path, "    recovery: {}\n").recovery == RecoveryPolicy()


def test_detach_and_name_reach_worker_options(tmp_path: Path) -> None:
    options = _options(tmp_path, "    detach: true\n    name: tiny-hf.v2\n")
    assert (options.detach, options.name) == (True, "tiny-hf.v2")
    assert _options(tmp_path, "    name: eval_1\n").name == "eval_1"


# -- mistakes name the key and the fix -------------------------------------------


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("    cache_bytes: -1\n", r"cache_bytes: expected a number of bytes >= 0, got -1; write"),
        ("    cache_bytes: 1.5\n", r"cache_bytes: expected a number of bytes >= 0, got 1\.5;"),
        ("    cache_bytes: true\n", r"cache_bytes: expected a number of bytes >= 0, got True;"),
        ("    cache_bytes: 256M\n", r"cache_bytes: '256M' is not a size; .*units: B, KB"),
        ("    cache_bytes: lots\n", r"cache_bytes: 'lots' is not a size; write .* e\.g\. 256MiB"),
        ("    cache_bytes: -5MB\n", r"cache_bytes: '-5MB' is not a size"),
        ("    dynamic_batching: 'no'\n", r"dynamic_batching: expected true or false.*write true"),
        ("    dynamic_batching: 1\n", r"dynamic_batching: expected true or false, got 1"),
        ("    batch_window_s: 0.5\n", r"batch_window_s: expected seconds within \[0, 0\.1\]"),
        ("    batch_window_s: -0.001\n", r"batch_window_s: expected .* write e\.g\. 0\.002"),
        ("    batch_window_s: 2ms\n", r"batch_window_s: expected seconds .*got '2ms'"),
        ("    batch_window_s: true\n", r"batch_window_s: expected seconds .*got True"),
        ("    batch_window: 0.01\n", r"batch_window: unknown key; did you mean 'batch_window_s'"),
        ("    journal: 3\n", r"journal: expected a path, got 3; write e\.g\. journal:"),
        ("    journal: ''\n", r"journal: expected a path, got ''"),
        ("    journal: no/such/dir/j.sqlite\n", r"journal: the folder of .* does not exist; creat"),
        ("    journal: .\n", r"journal: .* is a folder; name a file in it"),
        ("    options: [a]\n", r"options: expected a mapping, got list; write e\.g\."),
        ("    options: {a: [1]}\n", r"options\.a: expected a string, got \[1\]; quote the value"),
        ("    options: {a: {b: 1}}\n", r"options\.a: expected a string, .*; quote the value"),
        ("    options: {a: }\n", r"options\.a: expected a string, got None; quote"),
        ("    recovery: always\n", r"recovery: expected a mapping of RecoveryPolicy fields or"),
        ("    recovery: [1]\n", r"recovery: expected a mapping, got list"),
        (
            "    recovery: {max_restart: 3}\n",
            r"recovery\.max_restart: unknown key; did you mean 'max_restarts'\? allowed: "
            r"backoff_initial_s, .*standby",
        ),
        (
            "    recovery: {restarts: 3}\n",
            r"recovery\.restarts: unknown key; (did you mean .*)?allowed: backoff_initial_s",
        ),
        (
            "    recovery: {max_restarts: 1.5}\n",
            r"recovery\.max_restarts: expected a whole number, got 1\.5; write e\.g\. "
            r"max_restarts: 10",
        ),
        (
            "    recovery: {max_restarts: true}\n",
            r"recovery\.max_restarts: expected a whole number, got True",
        ),
        (
            "    recovery: {deadline_floor_s: '30'}\n",
            r"recovery\.deadline_floor_s: expected a number, got '30'; write e\.g\. "
            r"deadline_floor_s: 30\.0",
        ),
        (
            "    recovery: {standby: 1}\n",
            r"recovery\.standby: expected true or false, got 1; write e\.g\. standby: false",
        ),
        (
            "    recovery: {max_restarts: -1}\n",
            r"recovery\.max_restarts: RecoveryPolicy\.max_restarts must be >= 0.*; write e\.g\.",
        ),
        (
            "    recovery: {poison_after: 0}\n",
            r"recovery\.poison_after: RecoveryPolicy\.poison_after must be >= 1; write e\.g\. "
            r"poison_after: 2",
        ),
        (
            "    recovery: {backoff_jitter: 2}\n",
            r"recovery\.backoff_jitter: RecoveryPolicy\.backoff_jitter must be within \[0, 1\]",
        ),
        ("    detach: yes please\n", r"detach: expected true or false"),
        (
            "    detach: true\n    recovery: {standby: true}\n",
            r"workers\.hf: has detach: true with launcher: ray or recovery\.standby: true; "
            r"a detached worker runs locally",
        ),
        (
            "    detach: true\n    launcher: ray\n",
            r"workers\.hf: has detach: true with launcher: ray .*drop detach",
        ),
        ("    name: 7\n", r"name: expected a string, got 7; quote the value"),
        ("    name: ''\n", r"name: expected a string"),
        (
            "    name: my worker\n",
            r"name: 'my worker' cannot name a detached worker: use letters, .*; write e\.g\.",
        ),
    ],
)
def test_bad_values_name_the_key_and_the_fix(tmp_path: Path, section: str, message: str) -> None:
    path = _write(tmp_path, section)
    with pytest.raises(ConfigError, match=message) as caught:
        config.worker_options("hf", path)
    assert str(caught.value).startswith(f"{path}: workers.hf")


# -- end to end: sway's loader, the config file, a running worker ----------------


def test_sway_entry_point_runs_the_worker_the_config_describes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``swayhost.sway:HF`` built by sway, tuned only by the config file.

    ``build`` is swapped for ``spawn`` of the dummy worker (``build`` refuses
    ``kind="dummy"``, and only applies sway's dispatch rules before calling
    ``spawn``): everything else is the path a ``sway run`` takes, down to a
    real worker process, the journal file and the result cache.
    """
    (tmp_path / "runs").mkdir()
    config_path = tmp_path / "swayhost.yaml"
    config_path.write_text(
        "workers:\n"
        "  hf:\n"
        "    cache_bytes: 0\n"
        "    dynamic_batching: false\n"
        "    journal: runs/hf.sqlite\n"
        "    options: {protocols: scalable, sleep_ms: 50}\n"
        "    recovery: {max_restarts: 4, health_interval_s: 0}\n"
        "    name: config-e2e\n"
        "    background_start: false\n",
        encoding="utf-8",
    )
    monkeypatch.setenv(config.CONFIG_ENV, str(config_path))
    built: list[ModelSpec] = []

    def spawn_as_dummy(spec: ModelSpec) -> swayhost.RemoteBackend:
        built.append(spec)
        return swayhost.spawn(dataclasses.replace(spec, kind="dummy"))

    monkeypatch.setattr(host_sway, "build", spawn_as_dummy)
    journal = tmp_path / "runs" / "hf.sqlite"

    def score(backend: Any) -> list[float]:
        """7 requests, 6 distinct; 4 of them at once, which dynamic batching would batch."""
        with backend.as_base() as view, ThreadPoolExecutor(4) as pool:
            values = [view.logprob_of("a b", " c"), view.logprob_of("a b", " c")]
            values += pool.map(lambda i: view.logprob_of(f"a w{i}", " c"), range(4))
        with backend.as_finetuned() as view:
            values.append(view.logprob_of("a b", " d"))
        return values

    first = sway_build(
        SwayModelSpec(kind="custom", entry_point=ENTRY_POINT, base="toy", adapter=tmp_path)
    )
    try:
        assert isinstance(first, host_sway.HF)
        worker = built[0].worker
        assert (worker.cache_bytes, worker.dynamic_batching) == (0, False)
        assert worker.journal == journal
        assert worker.options == {"protocols": "scalable", "sleep_ms": "50"}
        assert worker.recovery == RecoveryPolicy(max_restarts=4, health_interval_s=0.0)
        # The options reached the worker's Load: it kept only the scalable protocol
        # (and background_start: false made sway's checks see exactly that).
        assert isinstance(first, ScalableDifferentialBackend)
        assert not isinstance(first, NullCalibratedBackend)
        scores = score(first)
        stats = first.stats()
    finally:
        first.close()
    assert stats.worker == "config-e2e"
    # Cache off: the repeated request is no cache hit (the journal answers it instead).
    assert (stats.cache_hits, stats.cache_misses) == (0, 0)
    assert (stats.computed, stats.journal_hits) == (6, 1)
    # Dynamic batching off: the concurrent calls went out one unary RPC each.
    assert (stats.score_rpcs, stats.batch_rpcs) == (6, 0)
    with sqlite3.connect(journal) as db:
        rows = db.execute("SELECT op, COUNT(*) FROM results GROUP BY op").fetchall()
    assert rows == [("logprob_of", 6)]

    rerun = sway_build(
        SwayModelSpec(kind="custom", entry_point=ENTRY_POINT, base="toy", adapter=tmp_path)
    )
    try:
        assert score(rerun) == scores
        stats = rerun.stats()
    finally:
        rerun.close()
    assert (stats.journal_hits, stats.computed, stats.score_rpcs) == (7, 0, 0)
    assert (stats.cache_hits, stats.cache_misses) == (0, 0)
    # A journal kept for another model: sway run gets a spec error naming it, not a traceback.
    journal.unlink()
    Journal.open(journal, "hf:another-model").close()
    with pytest.raises(SpecValidationError, match="hf:another-model"):
        sway_build(
            SwayModelSpec(kind="custom", entry_point=ENTRY_POINT, base="toy", adapter=tmp_path)
        )
