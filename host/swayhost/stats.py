"""What recovery did for a backend: counters, events, and their snapshot.

Every recovery event (a crash, a restart, a retry, a hang, a poison input)
is logged under ``swayhost``, counted, and handed to an optional sink (the
journal, which keeps them for ``swayhost stats``), all in one place so the
three can never disagree. ``RemoteBackend.stats()`` returns a
``BackendStats`` snapshot.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger("swayhost")

EventSink = Callable[[str, str, str], None]
"""Called as ``sink(kind, worker, message)`` for every event."""


@dataclass(frozen=True, slots=True)
class BackendStats:
    """A snapshot of one backend's scoring and recovery counters."""

    worker: str
    pid: int
    """The pid of the worker serving now."""
    workers_started: int
    """1 for the first worker, plus one per successful restart."""
    computed: int
    """Scoring requests the worker answered in this process."""
    journal_hits: int
    """Scoring requests served from the journal without asking the worker."""
    cache_hits: int
    """Scoring requests answered by the in-memory result cache."""
    cache_misses: int
    """Scoring requests the cache could not answer (sent on, or found in the journal)."""
    score_rpcs: int
    """Unary Score RPCs the worker answered."""
    batch_rpcs: int
    """ScoreBatch RPCs the worker answered (from ``*_many`` calls and dynamic batching)."""
    crashes: int
    """Times the worker died, hung or dropped its connection."""
    restarts: int
    """Restart attempts (a failed start counts too)."""
    retries: int
    """Calls sent again after their worker died under them."""
    hangs: int
    """Workers killed for not answering: a missed deadline or failed health checks."""
    health_check_failures: int
    poison_inputs: int
    """Calls failed alone because they killed their worker every time."""
    standby_ready: bool
    """A warmed-up spare worker is waiting (``RecoveryPolicy.standby``)."""
    last_exit_cause: str
    """How the last worker ended, or "" when none has."""
    last_restart_s: float | None
    """Seconds the last restart took (start, handshake, Load)."""

    def summary(self) -> str:
        """One line for logs and the end of a run."""
        return (
            f"worker {self.worker}: {self.computed} computed in {self.score_rpcs} unary and "
            f"{self.batch_rpcs} batch RPCs, {self.cache_hits} from the cache, "
            f"{self.journal_hits} from the journal; {self.crashes} crashes, "
            f"{self.restarts} restarts, {self.retries} retries, "
            f"{self.hangs} hangs, {self.poison_inputs} poison inputs"
        )


class StatsRecorder:
    """Thread-safe counters plus event logging for one backend."""

    def __init__(self, worker: str) -> None:
        self.worker = worker
        self.sink: EventSink | None = None
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.last_exit_cause = ""
        self.last_restart_s: float | None = None

    def add(self, counter: str, n: int = 1) -> None:
        with self._lock:
            self._counts[counter] += n

    def event(self, kind: str, level: int, message: str) -> None:
        """Count ``kind``, log ``message`` and pass it to the sink."""
        self.add(kind)
        log.log(level, "%s", message)
        sink = self.sink
        if sink is not None:
            try:
                sink(kind, self.worker, message)
            except Exception:  # a full disk must not turn recovery into a crash
                log.exception("could not record a %s event in the journal", kind)

    def counts(self) -> dict[str, int]:
        """A copy of every counter, by name."""
        with self._lock:
            return dict(self._counts)

    def snapshot(self, *, pid: int, standby_ready: bool) -> BackendStats:
        c = self.counts()
        return BackendStats(
            worker=self.worker,
            pid=pid,
            workers_started=1 + c.get("restarted", 0),
            computed=c.get("computed", 0),
            journal_hits=c.get("journal_hit", 0),
            cache_hits=c.get("cache_hit", 0),
            cache_misses=c.get("cache_miss", 0),
            score_rpcs=c.get("score_rpc", 0),
            batch_rpcs=c.get("batch_rpc", 0),
            crashes=c.get("crash", 0),
            restarts=c.get("restart", 0),
            retries=c.get("retry", 0),
            hangs=c.get("hang", 0),
            health_check_failures=c.get("health_check_failure", 0),
            poison_inputs=c.get("poison", 0),
            standby_ready=standby_ready,
            last_exit_cause=self.last_exit_cause,
            last_restart_s=self.last_restart_s,
        )


@dataclass(frozen=True, slots=True)
class SwayStats:
    """sway's ``BackendStats`` counters, as a report's ``backend_stats`` carries them.

    In process sway reads them from its backend's forward cache; through the
    host a "hit" is a request the host answered from its result cache or
    journal, and a "forward pass" is one the worker computed.
    """

    cache_hits: int
    cache_misses: int
    forward_passes: int
    scoring_wall_s: float

    def to_dict(self) -> dict[str, float | int]:
        """The keys and order of sway's ``BackendStats.to_dict``."""
        lookups = self.cache_hits + self.cache_misses
        return {
            "cache_hits": self.cache_hits,
            "cache_misses": self.cache_misses,
            "forward_passes": self.forward_passes,
            "scoring_wall_s": self.scoring_wall_s,
            "hit_rate": self.cache_hits / lookups if lookups else 0.0,
        }


class SwayInstrumentation:
    """What sway's runner reads as ``backend._inst``: ``stats`` and ``set_current_probe``.

    sway snapshots ``_inst.stats.to_dict()`` into a report's
    ``backend_stats`` after a suite; without this a run through the host
    reported ``{}``. The counts come from the backend's ``StatsRecorder``; the
    wall time is the time callers spent inside scoring calls.
    """

    def __init__(self, recorder: StatsRecorder) -> None:
        self._recorder = recorder
        self._wall_s = 0.0
        self._lock = threading.Lock()
        self.current_probe: str | None = None

    def add_wall(self, seconds: float) -> None:
        with self._lock:
            self._wall_s += seconds

    def set_current_probe(self, name: str | None) -> None:
        """sway's runner names the probe about to run (its traces use it)."""
        self.current_probe = name

    @property
    def stats(self) -> SwayStats:
        counts = self._recorder.counts()
        computed = counts.get("computed", 0)
        with self._lock:
            wall = self._wall_s
        return SwayStats(
            cache_hits=counts.get("cache_hit", 0) + counts.get("journal_hit", 0),
            cache_misses=computed,
            forward_passes=computed,
            scoring_wall_s=wall,
        )
