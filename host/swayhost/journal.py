"""The durable scoring journal: every result, keyed by what was asked, in SQLite.

A multi-hour evaluation killed halfway (host or worker) should not score
again what it already scored. With a journal (``WorkerOptions.journal``)
every result is written as it arrives, keyed by ``request_key``: the
backend's cache identity plus the request exactly as the worker receives
it (view, operation, arguments). A rerun serves those results from the
file and sends only the rest to the worker.

The file is SQLite in WAL mode with ``synchronous=NORMAL``: a commit per
result (or per batch) costs no fsync, and a committed result survives the
host being SIGKILLed. A journal is trusted only when it proves to be one:
the SQLite header, ``PRAGMA quick_check``, a header table naming this
format, its version and the backend's cache identity, and a CRC32 on every
stored result. Anything else is refused with ``JournalError`` before a
single value is read; a foreign file is never modified.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from swayplugin.v1 import backend_pb2 as pb
from swayworker.codec import Request, request_to_proto

from swayhost.errors import JournalError

FORMAT = "swayhost-journal"
FORMAT_VERSION = 1
KEY_VERSION = 1
"""Bump when ``request_key`` changes, so old keys can never match new requests."""

_SQLITE_MAGIC = b"SQLite format 3\x00"
_MAX_VARIABLES = 500
"""Keys per ``IN (...)`` query, well under SQLite's variable limit."""

_SCHEMA = """
CREATE TABLE header (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (run INTEGER PRIMARY KEY, started REAL NOT NULL, host_pid INTEGER NOT NULL);
CREATE TABLE results (
    key TEXT PRIMARY KEY, op TEXT NOT NULL, response BLOB NOT NULL,
    crc INTEGER NOT NULL, run INTEGER NOT NULL
);
CREATE TABLE events (
    at REAL NOT NULL, run INTEGER NOT NULL, kind TEXT NOT NULL,
    worker TEXT NOT NULL, message TEXT NOT NULL
);
"""

Entry = tuple[str, str, pb.ScoreResponse]
"""(key, operation name, response) for one result to store."""


def request_key(cache_identity: str, request: Request) -> str:
    """A stable key for ``request`` on the backend ``cache_identity``.

    The key hashes the request's deterministic wire encoding, i.e. exactly
    what the worker computes from: requests that reach the worker as the
    same message share a key, and any difference in view, operation or
    argument gives another. It is the same in every process and on every
    machine, so it can key in-memory caches as well as this journal.
    """
    return message_key(cache_identity, request_to_proto(request))


def message_key(cache_identity: str, message: pb.ScoreRequest) -> str:
    """``request_key`` of a request already encoded, for callers that send it anyway."""
    digest = hashlib.sha256(f"{KEY_VERSION}\0{cache_identity}\0".encode())
    digest.update(message.SerializeToString(deterministic=True))
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class RunSummary:
    run: int
    started: float
    host_pid: int
    computed: int


@dataclass(frozen=True, slots=True)
class EventRecord:
    at: float
    run: int
    kind: str
    worker: str
    message: str


@dataclass(frozen=True, slots=True)
class JournalSummary:
    """What ``swayhost stats --journal`` shows."""

    path: str
    format_version: int
    cache_identity: str
    created: float
    results: dict[str, int]
    runs: list[RunSummary]
    events: dict[str, int]
    recent_events: list[EventRecord]


class Journal:
    """An open journal for one backend identity; safe to share between threads."""

    def __init__(self, path: Path, db: sqlite3.Connection, run: int) -> None:
        self.path = path
        self.run = run
        self._db = db
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: str | Path, cache_identity: str) -> Journal:
        """Open (or create) the journal at ``path`` for ``cache_identity``.

        ``path`` may be an existing folder: the journal is then the file in
        it named by the identity (``journal_in``), so backends that differ
        only in their adapter (``build_many``, a sweep) can share one
        ``WorkerOptions.journal`` and still each keep their own file.
        """
        path = Path(path).expanduser().resolve()
        if path.is_dir():
            path = journal_in(path, cache_identity)
        db = _connect(path, read_only=False)
        try:
            header = _header(db, path)
            if header is None:
                _initialise(db, cache_identity)
                header = _header(db, path) or {}
            _check_identity(header, path, cache_identity)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            with _transaction(db):
                cursor = db.execute(
                    "INSERT INTO runs (started, host_pid) VALUES (?, ?)", (time.time(), os.getpid())
                )
            run = int(cursor.lastrowid or 0)
        except BaseException:
            db.close()
            raise
        return cls(path, db, run)

    def get_many(self, keys: Sequence[str]) -> dict[str, pb.ScoreResponse]:
        """The stored responses among ``keys``; a damaged row raises ``JournalError``."""
        found: dict[str, pb.ScoreResponse] = {}
        with self._lock:
            for start in range(0, len(keys), _MAX_VARIABLES):
                chunk = list(keys[start : start + _MAX_VARIABLES])
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT key, response, crc FROM results WHERE key IN ({marks})", chunk
                ).fetchall()
                for key, blob, crc in rows:
                    found[key] = self._decode(key, blob, crc)
        return found

    def put_many(self, entries: Sequence[Entry]) -> None:
        """Store results, in one transaction; a key already stored keeps its value."""
        if not entries:
            return
        rows = []
        for key, op, response in entries:
            blob = response.SerializeToString(deterministic=True)
            rows.append((key, op, blob, _crc(key, blob), self.run))
        with self._lock, _transaction(self._db):
            self._db.executemany(
                "INSERT OR IGNORE INTO results (key, op, response, crc, run) VALUES (?,?,?,?,?)",
                rows,
            )

    def record_event(self, kind: str, worker: str, message: str) -> None:
        with self._lock, _transaction(self._db):
            self._db.execute(
                "INSERT INTO events (at, run, kind, worker, message) VALUES (?,?,?,?,?)",
                (time.time(), self.run, kind, worker, message),
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _decode(self, key: str, blob: bytes, crc: int) -> pb.ScoreResponse:
        if _crc(key, blob) != crc:
            raise JournalError(
                f"journal {self.path} is corrupt: a stored result fails its checksum. "
                "Delete the file to start over; its results will be computed again."
            )
        response = pb.ScoreResponse()
        response.ParseFromString(blob)
        return response


def journal_in(folder: Path, cache_identity: str) -> Path:
    """The journal file of ``cache_identity`` in a journal folder: stable across runs."""
    digest = hashlib.sha256(cache_identity.encode()).hexdigest()[:24]
    return folder / f"{digest}.sqlite"


def summarize(path: str | Path) -> JournalSummary:
    """Read a journal's contents without changing it (for ``swayhost stats``)."""
    path = Path(path).expanduser().resolve()
    if not path.is_file():
        raise JournalError(f"no journal at {path}")
    db = _connect(path, read_only=True)
    try:
        header = _header(db, path)
        if header is None:
            raise JournalError(f"{path} is an empty SQLite file, not a swayhost journal")
        results = dict(db.execute("SELECT op, COUNT(*) FROM results GROUP BY op").fetchall())
        per_run = dict(db.execute("SELECT run, COUNT(*) FROM results GROUP BY run").fetchall())
        runs = [
            RunSummary(run, started, pid, per_run.get(run, 0))
            for run, started, pid in db.execute("SELECT run, started, host_pid FROM runs")
        ]
        events = dict(db.execute("SELECT kind, COUNT(*) FROM events GROUP BY kind").fetchall())
        recent = [
            EventRecord(*row)
            for row in db.execute(
                "SELECT at, run, kind, worker, message FROM events ORDER BY at DESC LIMIT 10"
            )
        ]
    finally:
        db.close()
    return JournalSummary(
        path=str(path),
        format_version=int(header["format_version"]),
        cache_identity=header["cache_identity"],
        created=float(header["created"]),
        results=results,
        runs=runs,
        events=events,
        recent_events=recent[::-1],
    )


# -- validation ------------------------------------------------------------------


def _connect(path: Path, *, read_only: bool) -> sqlite3.Connection:
    """A connection to ``path``, refusing a file that is not SQLite at all."""
    if path.exists() and not path.is_file():
        raise JournalError(f"journal path {path} exists and is not a file")
    if not path.parent.is_dir():
        raise JournalError(
            f"journal {path}: its folder {path.parent} does not exist; create it"
            f" (mkdir -p {path.parent}) or put the journal in an existing folder"
        )
    if path.is_file() and path.stat().st_size > 0:
        with path.open("rb") as f:
            if f.read(len(_SQLITE_MAGIC)) != _SQLITE_MAGIC:
                raise JournalError(
                    f"{path} is not a swayhost journal (not even a SQLite database); "
                    "refusing to use or overwrite it. Point the journal at a new path."
                )
    target = f"file:{path}?mode=ro" if read_only else str(path)
    try:
        db = sqlite3.connect(
            target, uri=read_only, timeout=30.0, check_same_thread=False, isolation_level=None
        )
        rows = db.execute("PRAGMA quick_check").fetchall()
    except sqlite3.Error as exc:
        raise JournalError(f"journal {path} is unreadable or corrupt: {exc}") from exc
    if rows != [("ok",)]:
        db.close()
        problems = "; ".join(str(r[0]) for r in rows[:3])
        raise JournalError(f"journal {path} is corrupt ({problems}); delete it to start over")
    return db


def _header(db: sqlite3.Connection, path: Path) -> dict[str, str] | None:
    """The journal's header, None for an empty database, or ``JournalError``."""
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if not tables:
        return None
    if "header" not in tables:
        raise JournalError(
            f"{path} is a SQLite database but not a swayhost journal (no header table); "
            "refusing to use it. Point the journal at a new path."
        )
    header = dict(db.execute("SELECT name, value FROM header").fetchall())
    if header.get("format") != FORMAT:
        raise JournalError(
            f"{path} is not a swayhost journal (its header names format "
            f"{header.get('format')!r}); refusing to use it"
        )
    version = header.get("format_version", "?")
    if version != str(FORMAT_VERSION) or header.get("key_version") != str(KEY_VERSION):
        raise JournalError(
            f"journal {path} has format version {version} (key version "
            f"{header.get('key_version')}); this swayhost reads version {FORMAT_VERSION} "
            f"(key version {KEY_VERSION}). Use a new journal path."
        )
    return header


def _initialise(db: sqlite3.Connection, cache_identity: str) -> None:
    """Create the tables, unless another process did since we looked."""
    header = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "key_version": str(KEY_VERSION),
        "cache_identity": cache_identity,
        "created": repr(time.time()),
    }
    with _transaction(db):
        if db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]:
            return
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)
        db.executemany("INSERT INTO header (name, value) VALUES (?, ?)", header.items())


def _check_identity(header: dict[str, str], path: Path, cache_identity: str) -> None:
    if header.get("cache_identity") != cache_identity:
        raise JournalError(
            f"journal {path} holds results of backend {header.get('cache_identity')!r}, "
            f"not of this backend {cache_identity!r}; results of one model must never be "
            "served for another. Give each backend its own journal path."
        )


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _crc(key: str, blob: bytes) -> int:
    return zlib.crc32(blob, zlib.crc32(key.encode()))
