"""The durable scoring journal: stable keys, resuming a killed run, refusing bad files."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from swayhost import JournalError
from swayhost.journal import Journal, journal_in, request_key, summarize
from swayplugin.v1 import backend_pb2 as pb
from swayworker.codec import LogprobOf, NextTokenDist, Request, RollingLogprobOp, ViewKey

from tests.helpers import (
    FAST_RECOVERY,
    TESTS,
    process_alive,
    same_result,
    spawn_dummy,
    wait_until,
    workload,
)

IDENTITY = "dummy:64"
"""The dummy worker's cache identity."""


def test_request_key_is_stable_across_processes_and_tells_requests_apart() -> None:
    base = Request(ViewKey.ft(), NextTokenDist("a b", 8))
    variants = [
        base,
        Request(ViewKey.ft(), NextTokenDist("a b ", 8)),
        Request(ViewKey.ft(), NextTokenDist("a b", 9)),
        Request(ViewKey.base(), NextTokenDist("a b", 8)),
        Request(ViewKey.scaled(0.5), NextTokenDist("a b", 8)),
        Request(ViewKey.scaled(0.25), NextTokenDist("a b", 8)),
        Request(ViewKey.null(1), NextTokenDist("a b", 8)),
        Request(ViewKey.null(1, rank_scale=0.5), NextTokenDist("a b", 8)),
        Request(ViewKey.ft(), RollingLogprobOp("a b")),
        Request(ViewKey.ft(), LogprobOf("a", " b")),
        Request(ViewKey.ft(), LogprobOf("a ", "b")),
    ]
    keys = [request_key(IDENTITY, r) for r in variants]
    assert len(set(keys)) == len(variants)
    assert request_key(IDENTITY, Request(ViewKey.ft(), NextTokenDist("a b", 8))) == keys[0]
    assert request_key("hf:/base:/adapter", base) != keys[0]
    program = (
        "from swayhost.journal import request_key\n"
        "from swayworker.codec import NextTokenDist, Request, ViewKey\n"
        f"print(request_key({IDENTITY!r}, Request(ViewKey.ft(), NextTokenDist('a b', 8))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == keys[0]


def test_a_rerun_serves_scored_requests_from_the_journal(tmp_path: Path) -> None:
    requests = workload(40)
    with spawn_dummy() as plain:
        want = plain.score_many(requests)
    journal = tmp_path / "run.sqlite"
    with spawn_dummy(journal=journal) as first:
        first.score_many(requests[:15])
        for request in requests[15:20]:
            first.score(request)
    with spawn_dummy(journal=journal) as second:
        got = second.score_many(requests)
        assert same_result(second.score(requests[3]), want[3])  # a unary hit
        stats = second.stats()
    assert all(map(same_result, got, want))
    assert (stats.journal_hits, stats.computed) == (21, 20)
    assert [r.computed for r in summarize(journal).runs] == [20, 20]


def test_a_journal_folder_keeps_each_backends_file_named_by_its_identity(tmp_path: Path) -> None:
    """A folder journal: what lets backends of many adapters share one ``WorkerOptions``."""
    requests = workload(10)
    folder = tmp_path / "journals"
    folder.mkdir()
    with spawn_dummy(journal=folder) as first:
        want = first.score_many(requests)
        identity = first.cache_identity()
    (stored,) = folder.glob("*.sqlite")
    assert stored == journal_in(folder.resolve(), identity)
    assert summarize(stored).cache_identity == identity
    with spawn_dummy(journal=folder) as again:
        got = again.score_many(requests)
        stats = again.stats()
    assert all(map(same_result, got, want))
    assert (stats.journal_hits, stats.computed) == (10, 0)
    assert journal_in(folder, "another") != stored, "another identity gets another file"


HOST = """
import sys, time
import swayhost
from swayhost import ModelSpec, RecoveryPolicy, WorkerOptions
from tests.helpers import workload

worker = WorkerOptions(
    options={"sleep_ms": "20"}, journal=sys.argv[1], recovery=RecoveryPolicy(standby=True)
)
backend = swayhost.spawn(ModelSpec(kind="dummy", base="toy", worker=worker))
for i, request in enumerate(workload(int(sys.argv[2]))):
    backend.score(request)
    print(i, backend.stats().standby_ready, flush=True)
time.sleep(600)
"""


def test_host_sigkilled_mid_run_leaves_no_worker_and_the_rerun_resumes(tmp_path: Path) -> None:
    total = 200
    journal = tmp_path / "run.sqlite"
    sockets = tmp_path / "tmp"
    sockets.mkdir()
    env = {**os.environ, "TMPDIR": str(sockets), "PYTHONPATH": str(TESTS.parent)}
    host = subprocess.Popen(
        [sys.executable, "-c", HOST, str(journal), str(total)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert host.stdout is not None
        for line in host.stdout:  # run until well under way, with the standby up
            scored, standby = int(line.split()[0]) + 1, line.split()[1] == "True"
            if scored >= 60 and standby:
                break
        workers = psutil.Process(host.pid).children()
        assert len(workers) == 2, "the worker and its standby"
        host.kill()
        host.wait(5)
        killed_at = time.monotonic()
        wait_until(lambda: not any(process_alive(w.pid) for w in workers), timeout=5)
        survived = time.monotonic() - killed_at
    finally:
        host.kill()
    assert survived < 2.0, f"a worker outlived its SIGKILLed host by {survived:.2f}s"
    assert not list(sockets.iterdir()), "socket folders left behind"

    stored = sum(summarize(journal).results.values())
    assert stored >= scored
    with spawn_dummy() as plain:
        want = [plain.score(r) for r in workload(total)]
    with spawn_dummy(journal=journal) as rerun:
        got = [rerun.score(r) for r in workload(total)]
        stats = rerun.stats()
    assert all(map(same_result, got, want))
    assert (stats.journal_hits, stats.computed) == (stored, total - stored)
    print(f"\nhost killed after {scored} calls: {stored} resumed, {total - stored} recomputed")


def _garbage(path: Path) -> None:
    path.write_bytes(os.urandom(4096))


def _foreign_sqlite(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE notes (body TEXT)")


def _other_backend(path: Path) -> None:
    Journal.open(path, "hf:/some/base:/some/adapter").close()


def _newer_format(path: Path) -> None:
    Journal.open(path, IDENTITY).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE header SET value = '2' WHERE name = 'format_version'")


def _truncated(path: Path) -> None:
    journal = Journal.open(path, IDENTITY)
    response = pb.ScoreResponse(logprob=-1.0)
    journal.put_many([(f"k{i}", "logprob_of", response) for i in range(2000)])
    journal.close()
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size // 2)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_garbage, "not even a SQLite database"),
        (_foreign_sqlite, "not a swayhost journal (no header table)"),
        (_other_backend, "holds results of backend 'hf:/some/base:/some/adapter'"),
        (_newer_format, "has format version 2"),
        (_truncated, "corrupt"),
    ],
    ids=["garbage", "foreign-sqlite", "other-backend", "newer-format", "truncated"],
)
def test_journals_that_cannot_be_trusted_are_refused(
    tmp_path: Path, make: Callable[[Path], None], message: str
) -> None:
    path = tmp_path / "run.sqlite"
    make(path)
    before = path.read_bytes()
    children = {p.pid for p in psutil.Process().children()}
    with pytest.raises(JournalError, match=re.escape(message)):
        spawn_dummy(journal=path)
    assert path.read_bytes() == before, "a refused file must not be modified"
    left = [p for p in psutil.Process().children() if p.pid not in children]
    wait_until(lambda: not any(process_alive(p.pid) for p in left))


def test_a_tampered_result_is_detected_when_read(tmp_path: Path) -> None:
    path = tmp_path / "run.sqlite"
    request = workload(1)[0]
    with spawn_dummy(journal=path) as backend:
        backend.score(request)
    with sqlite3.connect(path) as db:
        db.execute("UPDATE results SET response = X'0900000000000000c0'")
    with spawn_dummy(journal=path) as backend, pytest.raises(JournalError, match="checksum"):
        backend.score(request)


def test_cli_shows_journaled_results_and_recovery_events(tmp_path: Path) -> None:
    path = tmp_path / "run.sqlite"
    with spawn_dummy(journal=path, recovery=FAST_RECOVERY) as backend:
        backend.score_many(workload(12))
        os.kill(backend.pid, signal.SIGKILL)
        backend.score(workload(13)[-1])

    def swayhost(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "swayhost", "stats", *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    out = swayhost("--journal", str(path), "--json")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["cache_identity"] == IDENTITY and summary["format_version"] == 1
    assert sum(summary["results"].values()) == 13
    assert summary["events"]["crash"] == 1 and summary["events"]["restart"] == 1
    assert [r["computed"] for r in summary["runs"]] == [13]
    text = swayhost("--journal", str(path))
    assert text.returncode == 0 and IDENTITY in text.stdout and "crash 1" in text.stdout
    (tmp_path / "notes.txt").write_text("not a journal")
    bad = swayhost("--journal", str(tmp_path / "notes.txt"))
    assert bad.returncode == 3 and "not a swayhost journal" in bad.stderr
