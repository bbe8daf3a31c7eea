"""Keep one worker serving: notice when it dies or hangs, restart it, retry its calls.

The proxy sends every scoring call through a ``Supervisor``. One worker
process at a time (a *generation*) serves the calls; the supervisor

* detects the end of a generation: the process exited (any signal, any
  code), the connection broke, a call missed its deadline (see
  ``deadline``), or health checks failed in a row (a thread of its own);
  a hung worker is SIGKILLed, which also ends a SIGSTOPped one;
* restarts it under the ``RecoveryPolicy``: spawn (or take the warmed-up
  standby), handshake, Load the same spec, check it is the same backend;
  the budget caps restarts per window and spaces them with backoff;
* retries the calls that were in flight, unchanged: a batch is resent with
  the same items in the same order, so a retried result is the one the
  uninterrupted run would have computed, bit for bit. Requests are
  self-contained (view + operation + arguments), so no state is replayed.

Telling a poison input from bad luck: every attempt records which calls
were in flight when its generation died. A call that was in flight at
``poison_after`` consecutive deaths is retried alone (``Gate``); if the
worker then dies with nothing else in flight, the call is the cause. A
single request is failed with ``PoisonInputError``; a batch is split into
single requests, each run alone, so only the culprit fails.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import TypeVar

import grpc
from google.protobuf.message import Message
from swayplugin.v1 import backend_pb2 as pb
from swayplugin.v1 import backend_pb2_grpc as pb_grpc
from swayworker.codec import request_from_proto

from swayhost import translate
from swayhost.causes import ExitCause, exit_cause
from swayhost.connection import WorkerConnection
from swayhost.deadline import DeadlineEstimator
from swayhost.endpoint import ClosingLauncher, Launcher
from swayhost.errors import (
    PoisonInputError,
    RestartBudgetExhausted,
    UnsupportedCapabilityError,
    WorkerCrashedError,
)
from swayhost.gate import Gate
from swayhost.policy import RestartBudget, Step, after_crash
from swayhost.spec import ModelSpec
from swayhost.stats import BackendStats, StatsRecorder

log = logging.getLogger("swayhost")

Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)
Stub = pb_grpc.DifferentialBackendStub

_LIVE: weakref.WeakSet[Supervisor] = weakref.WeakSet()
_TOKENS = itertools.count(1)
_PREFLIGHT_UNITS = 2
"""A preflight runs one forward pass per view (base and ft)."""


class _Generation:
    """One worker process's life: its connection and the attempts in flight on it."""

    def __init__(self, number: int, conn: WorkerConnection, description: pb.DescribeResponse):
        self.number = number
        self.conn = conn
        self.description = description
        self.inflight: dict[int, int] = {}
        """Attempt token -> units of work, for attempts sent and not yet answered."""
        self.dead = False
        self.verdict: ExitCause | None = None
        """Set when the host itself killed the worker (hang, failed health checks)."""
        self.cause: ExitCause | None = None
        self.victims: frozenset[int] = frozenset()
        """The attempts in flight when the generation was found dead."""


class _Crash(Exception):
    """Internal: the generation died under an attempt."""

    def __init__(self, gen: _Generation, token: int) -> None:
        super().__init__("worker died")
        self.gen = gen
        self.cause = gen.cause or ExitCause("disconnected", "stopped serving")
        self.witnessed = token in gen.victims
        """False when the attempt only reached an already dead worker: not its fault."""
        self.alone = gen.victims == frozenset({token})


class Supervisor:
    """Owns the worker for one backend and runs calls on it through failures."""

    def __init__(self, spec: ModelSpec, launcher: Launcher) -> None:
        self.spec = spec
        self.policy = spec.worker.recovery
        self.name = spec.worker.name or spec.kind
        self.stats = StatsRecorder(self.name)
        self._launcher = launcher
        self._budget = RestartBudget(self.policy)
        self._deadlines = DeadlineEstimator(self.policy)
        self._gate = Gate()
        self._lock = threading.Lock()
        self._spare_ready = threading.Condition(self._lock)
        self._restart_lock = threading.Lock()
        self._gen: _Generation | None = None
        self._spare: WorkerConnection | None = None
        self._spare_starting = False
        self._failure: WorkerCrashedError | None = None
        self._closed = False
        self._stopping = threading.Event()
        self._spare_wanted = threading.Event()
        self._threads: list[threading.Thread] = []
        self._residents: list[ModelSpec] = []
        """Adapters Loaded beside the spec's (``add_adapter``); each restart Loads them again."""
        self._users = 1

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> pb.DescribeResponse:
        """Start the first worker and Load the spec; a failure here is raised as is."""
        conn = self._start_connection()
        try:
            description = conn.load(self.spec.to_proto(), timeout=self.spec.worker.startup_timeout)
        except BaseException:
            conn.close()
            raise
        self._gen = _Generation(1, conn, description)
        _LIVE.add(self)
        if self.policy.health_interval_s > 0:
            self._spawn_thread(self._watch_health, "health")
        if self.policy.standby:
            self._spare_wanted.set()
            self._spawn_thread(self._keep_standby, "standby")
        return description

    def _spawn_thread(self, target: Callable[[], None], job: str) -> None:
        """One thread per job for the supervisor's whole life, never one per worker."""
        thread = threading.Thread(target=target, name=f"swayhost-{self.name}-{job}", daemon=True)
        thread.start()
        self._threads.append(thread)

    def add_adapter(self, spec: ModelSpec) -> pb.DescribeResponse:
        """Load ``spec``'s adapter beside the resident ones; that adapter's description.

        The worker must claim ``resident_adapters``; ``spec`` must name the
        base it holds. Every later restart Loads it again after the spec.
        """
        description = self.description
        if not description.capabilities.resident_adapters:
            raise UnsupportedCapabilityError(
                f"worker {self.name!r} ({description.worker_kind}) holds one adapter at a time "
                "(it does not claim the resident_adapters capability), so it cannot serve "
                f"adapter {spec.adapter} beside {self.spec.adapter}; build one backend per "
                "adapter with swayhost.build instead",
                worker=self.name,
            )
        gen = self._live_generation()
        with self._restart_lock:
            loaded = gen.conn.load(
                spec.to_proto(), timeout=self.spec.worker.startup_timeout, keep_resident=True
            )
            self._residents.append(spec)
        return loaded

    def retain(self) -> None:
        """One more backend shares this worker; ``close`` stops it only after the last."""
        with self._lock:
            self._users += 1

    def release(self) -> None:
        """A backend sharing this worker is done with it; the last one closes it."""
        with self._lock:
            self._users -= 1
            last = self._users <= 0
        if last:
            self.close()

    def close(self) -> None:
        """Stop the threads, the worker and the standby; safe to call more than once."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            gen, spare, self._spare = self._gen, self._spare, None
            self._spare_ready.notify_all()
        self._stopping.set()
        self._spare_wanted.set()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(5.0)  # a standby still starting closes itself when done
        for conn in (gen.conn if gen else None, spare):
            if conn is not None:
                conn.close()
        if isinstance(self._launcher, ClosingLauncher):
            self._launcher.close()
        _LIVE.discard(self)
        if gen is not None:
            log.info("%s", self.snapshot().summary())

    @property
    def connection(self) -> WorkerConnection:
        """The connection to the worker serving now; it changes on restart."""
        return self._generation().conn

    @property
    def description(self) -> pb.DescribeResponse:
        return self._generation().description

    def snapshot(self) -> BackendStats:
        return self.stats.snapshot(
            pid=self._generation().conn.endpoint.pid, standby_ready=self._spare is not None
        )

    def _generation(self) -> _Generation:
        if self._gen is None:
            raise WorkerCrashedError(f"worker {self.name!r} was never started", worker=self.name)
        return self._gen

    # -- calls -------------------------------------------------------------

    def score(self, request: pb.ScoreRequest) -> pb.ScoreResponse:
        response = self._unary(
            lambda s: s.Score, request, _units(request), lambda: _describe(request)
        )
        self.stats.add("score_rpc")
        self.stats.add("computed")
        return response

    def preflight(self) -> pb.PreflightResponse:
        return self._unary(
            lambda s: s.Preflight, pb.PreflightRequest(), _PREFLIGHT_UNITS, lambda: "preflight"
        )

    def score_batch(self, requests: list[pb.ScoreRequest]) -> list[translate.Outcome]:
        """One ScoreBatch through failures: a response, or its own exception, per request."""
        return self._batch(requests, crashes=0, exclusive=False)

    def _unary(
        self,
        method: Callable[[Stub], grpc.UnaryUnaryMultiCallable[Req, Resp]],
        request: Req,
        units: int,
        what: Callable[[], str],
    ) -> Resp:
        crashes, exclusive = 0, False
        while True:
            try:
                return self._attempt(method, request, units, exclusive)
            except _Crash as crash:
                crashes += crash.witnessed
                step = self._next_step(crashes, crash, what, single=True)
                if step is Step.POISON:
                    raise self._poisoned(crash, crashes, what()) from None
                exclusive = step is Step.ISOLATE

    def _batch(
        self, requests: list[pb.ScoreRequest], *, crashes: int, exclusive: bool
    ) -> list[translate.Outcome]:
        message = pb.ScoreBatchRequest(requests=requests)
        units = sum(_units(r) for r in requests)

        def what() -> str:
            return _describe(requests[0]) if len(requests) == 1 else f"a batch of {len(requests)}"

        while True:
            try:
                response = self._attempt(lambda s: s.ScoreBatch, message, units, exclusive)
                self.stats.add("batch_rpc")
                self.stats.add("computed", len(response.items))
                return translate.batch_outcomes(list(response.items), self.name)
            except _Crash as crash:
                crashes += crash.witnessed
                step = self._next_step(crashes, crash, what, single=len(requests) == 1)
                if step is Step.POISON:
                    return [self._poisoned(crash, crashes, what())]
                if step is Step.SPLIT:
                    log.warning(
                        "worker %s: a batch of %d was in flight at %d crashes in a row; "
                        "running its requests one at a time to find the poison input",
                        self.name,
                        len(requests),
                        crashes,
                    )
                    out: list[translate.Outcome] = []
                    for request in requests:
                        out.extend(self._batch([request], crashes=crashes, exclusive=True))
                    return out
                exclusive = step is Step.ISOLATE

    def _next_step(
        self, crashes: int, crash: _Crash, what: Callable[[], str], *, single: bool
    ) -> Step:
        """What to do after an attempt's worker died (``policy.after_crash``); raises on GIVE_UP."""
        policy = self.policy
        step = after_crash(
            policy, crashes, witnessed=crash.witnessed, alone=crash.alone, single=single
        )
        if step in (Step.POISON, Step.SPLIT):
            return step
        if step is Step.GIVE_UP:
            raise WorkerCrashedError(
                f"worker {self.name!r} {crash.cause.text} while serving {what()}; giving up on "
                f"this call after {crashes - 1} retries (RecoveryPolicy.max_call_retries="
                f"{policy.max_call_retries}).{crash.gen.conn.endpoint.stderr_excerpt()}",
                worker=self.name,
                cause=crash.cause.kind,
                stderr_tail=crash.gen.conn.endpoint.stderr_tail(),
            ) from None
        self.stats.event(
            "retry",
            logging.INFO,
            f"worker {self.name}: retrying {what()} after the worker {crash.cause.text}",
        )
        return step

    def _poisoned(self, crash: _Crash, crashes: int, what: str) -> PoisonInputError:
        endpoint = crash.gen.conn.endpoint
        message = (
            f"worker {self.name!r}: {what} killed its worker {crashes} times in a row, the last "
            f"time with no other call in flight (it {crash.cause.text}); failing this request "
            f"alone as a poison input. The worker is restarted for the other requests."
            f"{endpoint.stderr_excerpt()}"
        )
        self.stats.event("poison", logging.ERROR, message)
        return PoisonInputError(
            message, worker=self.name, cause=crash.cause.kind, stderr_tail=endpoint.stderr_tail()
        )

    # -- one attempt ---------------------------------------------------------

    def _attempt(
        self,
        method: Callable[[Stub], grpc.UnaryUnaryMultiCallable[Req, Resp]],
        request: Req,
        units: int,
        exclusive: bool,
    ) -> Resp:
        with self._gate.hold(exclusive):
            gen = self._live_generation()
            token = next(_TOKENS)
            with self._lock:
                if gen.dead:
                    raise _Crash(gen, token)
                ahead = sum(gen.inflight.values())
                gen.inflight[token] = units
            kind = type(request).__name__
            timeout = self._deadlines.deadline(kind, units + ahead)
            started = time.monotonic()
            try:
                response = method(gen.conn.stub)(request, timeout=timeout)
            except grpc.RpcError as exc:
                raise self._failed(gen, token, exc, timeout) from None
            with self._lock:
                gen.inflight.pop(token, None)
        self._deadlines.observe(kind, time.monotonic() - started, units)
        self._budget.succeeded()
        return response

    def _failed(
        self, gen: _Generation, token: int, exc: grpc.RpcError, timeout: float
    ) -> Exception:
        """The exception for a failed attempt: the worker's own error, or ``_Crash``."""
        answered = translate.answered(exc, self.name)
        endpoint = gen.conn.endpoint
        if (
            answered is None
            and not self._closed
            and (translate.no_answer(exc) or not endpoint.alive())
        ):
            if translate.status_code(exc) == grpc.StatusCode.DEADLINE_EXCEEDED and endpoint.alive():
                self._condemn(gen, ExitCause.hang(timeout))
            elif not endpoint.wait(1.0):  # a dying worker drops its socket just before it exits
                self._condemn(gen, ExitCause.disconnected(translate.status_code(exc).name))
            self._mark_dead(gen)
            with self._lock:
                gen.inflight.pop(token, None)
            return _Crash(gen, token)
        with self._lock:
            gen.inflight.pop(token, None)
        if answered is not None:
            return answered
        if self._closed:
            return WorkerCrashedError(f"worker {self.name!r} is closed", worker=self.name)
        return translate.lost(exc, endpoint, self.name)

    # -- detection ---------------------------------------------------------

    def _condemn(self, gen: _Generation, cause: ExitCause) -> None:
        """Kill a worker that is alive but useless (hung, unreachable); the first verdict wins."""
        with self._lock:
            first = gen.verdict is None and not gen.dead
            if first:
                gen.verdict = cause
        if first and cause.kind in ("hang", "unhealthy"):
            self.stats.event(
                "hang",
                logging.WARNING,
                f"worker {self.name} (pid {gen.conn.endpoint.pid}) {cause.text} with SIGKILL",
            )
        gen.conn.endpoint.kill()  # SIGKILL also ends a stopped (SIGSTOP) process

    def _mark_dead(self, gen: _Generation) -> None:
        """Record the end of ``gen`` once, with its cause and the attempts it took down."""
        returncode = gen.conn.endpoint.reap(5.0)
        with self._lock:
            if gen.dead:
                return
            gen.dead = True
            gen.victims = frozenset(gen.inflight)
            if gen.verdict is not None:
                gen.cause = gen.verdict
            elif returncode is None:
                gen.cause = ExitCause.disconnected("still running")
            else:
                gen.cause = exit_cause(returncode, gen.conn.endpoint.stderr_tail(40))
            cause, victims = gen.cause, len(gen.victims)
        self.stats.last_exit_cause = cause.text
        self.stats.event(
            "crash",
            logging.WARNING,
            f"worker {self.name} (pid {gen.conn.endpoint.pid}) {cause.text} "
            f"with {victims} call(s) in flight",
        )

    def _watch_health(self) -> None:
        """Health thread: a worker that fails checks in a row is hung, even when idle."""
        failures: dict[int, int] = {}
        while not self._stopping.wait(self.policy.health_interval_s):
            try:
                self._check_health(failures)
            except Exception:  # the thread must outlive any one bad check
                log.exception("worker %s: health check went wrong", self.name)

    def _check_health(self, failures: dict[int, int]) -> None:
        gen = self._gen
        if gen is None or gen.dead or self._restart_lock.locked():
            return
        if not gen.conn.endpoint.alive():
            self._mark_dead(gen)  # died while idle; the next call restarts it
            return
        if gen.conn.healthy(self.policy.health_timeout_s) or gen.dead:
            failures.clear()
            return
        count = failures.get(gen.number, 0) + 1
        failures.clear()
        failures[gen.number] = count
        self.stats.add("health_check_failure")
        log.info("worker %s (pid %d) failed a health check", self.name, gen.conn.endpoint.pid)
        if count >= self.policy.health_failures:
            self._condemn(gen, ExitCause.unhealthy(count))

    # -- recovery ----------------------------------------------------------

    def _live_generation(self) -> _Generation:
        """The generation to send to, restarting the worker first if it is gone."""
        if self._closed:
            raise WorkerCrashedError(f"worker {self.name!r} is closed", worker=self.name)
        if self._failure is not None:
            raise self._failure
        gen = self._generation()
        if not gen.dead:
            if gen.conn.endpoint.alive():
                return gen
            self._mark_dead(gen)
        return self._restart(gen)

    def _restart(self, seen: _Generation) -> _Generation:
        with self._restart_lock:
            if self._failure is not None:
                raise self._failure
            current = self._generation()
            if current is not seen and not current.dead:
                return current  # another thread restarted it meanwhile
            return self._replace(current)

    def _replace(self, old: _Generation) -> _Generation:
        cause = old.cause or ExitCause("disconnected", "stopped serving")
        old.conn.close()  # reap it: reader threads, pipes, socket folder
        while True:
            delay = self._budget.acquire()
            if delay is None:
                self._failure = self._budget_spent(old, cause)
                self.stats.event("gave_up", logging.ERROR, str(self._failure))
                raise self._failure
            self.stats.event(
                "restart",
                logging.WARNING,
                f"restarting worker {self.name} in {delay:.2f}s: it {cause.text}",
            )
            if self._stopping.wait(delay):
                raise WorkerCrashedError(f"worker {self.name!r} is closed", worker=self.name)
            started = time.monotonic()
            try:
                gen = self._launch(old.number + 1)
            except Exception as exc:
                cause = ExitCause.start_failed(exc)
                self.stats.last_exit_cause = cause.text
                log.warning("worker %s: restart failed: %s", self.name, exc)
                continue
            self._check_same_backend(gen)
            self.stats.last_restart_s = time.monotonic() - started
            self.stats.add("restarted")
            log.info(
                "worker %s back as pid %d after %.2fs",
                self.name,
                gen.conn.endpoint.pid,
                self.stats.last_restart_s,
            )
            with self._lock:
                if not self._closed:
                    self._gen = gen
                    return gen
            gen.conn.close()
            raise WorkerCrashedError(f"worker {self.name!r} is closed", worker=self.name)

    def _launch(self, number: int) -> _Generation:
        conn = self._take_spare() or self._start_connection()
        try:
            description = conn.load(self.spec.to_proto(), timeout=self.spec.worker.startup_timeout)
        except BaseException:
            conn.close()
            raise
        try:
            self._reload_residents(conn)
        except BaseException:
            conn.close()
            raise
        self._spare_wanted.set()
        return _Generation(number, conn, description)

    def _reload_residents(self, conn: WorkerConnection) -> None:
        """Load the adapters of ``add_adapter`` into a restarted worker, each failing alone.

        One that no longer loads (deleted meanwhile) is logged and left out:
        the worker loads an adapter a request names anyway, so only that
        adapter's calls see the error.
        """
        timeout = self.spec.worker.startup_timeout
        for spec in list(self._residents):
            try:
                conn.load(spec.to_proto(), timeout=timeout, keep_resident=True)
            except WorkerCrashedError:
                raise
            except Exception as exc:
                log.warning("worker %s: adapter %s not reloaded: %s", self.name, spec.adapter, exc)

    def _check_same_backend(self, gen: _Generation) -> None:
        """Refuse a restarted worker that is not the backend the results came from."""
        first = self._generation().description
        now = gen.description
        same_caps = first.capabilities.SerializeToString(
            deterministic=True
        ) == now.capabilities.SerializeToString(deterministic=True)
        if same_caps and first.model.cache_identity == now.model.cache_identity:
            return
        gen.conn.close()
        self._failure = WorkerCrashedError(
            f"worker {self.name!r} came back as a different backend (cache identity "
            f"{first.model.cache_identity!r} -> {now.model.cache_identity!r}, or other "
            "capabilities); refusing to mix its results with the first worker's",
            worker=self.name,
            cause="start_failed",
        )
        raise self._failure

    def _budget_spent(self, old: _Generation, cause: ExitCause) -> RestartBudgetExhausted:
        policy = self.policy
        limit = (
            "restarts are off (RecoveryPolicy.max_restarts=0)"
            if policy.max_restarts == 0
            else f"that is {policy.max_restarts} restarts within {policy.restart_window_s:g}s, "
            "the limit of RecoveryPolicy.max_restarts"
        )
        endpoint = old.conn.endpoint
        return RestartBudgetExhausted(
            f"worker {self.name!r} (pid {endpoint.pid}) {cause.text}, and {limit}; giving up."
            f"{endpoint.stderr_excerpt()}",
            worker=self.name,
            cause=cause.kind,
            stderr_tail=endpoint.stderr_tail(),
        )

    # -- standby -------------------------------------------------------------

    def _keep_standby(self) -> None:
        """Standby thread: start a spare worker whenever the last one was taken."""
        while True:
            self._spare_wanted.wait()
            self._spare_wanted.clear()
            if self._stopping.is_set():
                return
            if not self._keep_spare() and not self._stopping.wait(self.policy.backoff_max_s):
                self._spare_wanted.set()  # try again, without spinning

    def _start_connection(self) -> WorkerConnection:
        conn = WorkerConnection(self._launcher.endpoint())
        conn.start()
        return conn

    def _keep_spare(self) -> bool:
        """Start a spare unless there is one; False when starting one failed."""
        with self._lock:
            if self._spare is not None or self._closed or self._failure is not None:
                return True
            self._spare_starting = True
        spare: WorkerConnection | None = None
        try:
            spare = self._start_connection()
        except Exception as exc:
            log.warning("worker %s: could not start a standby worker: %s", self.name, exc)
        with self._lock:
            self._spare_starting = False
            self._spare_ready.notify_all()
            if spare is None or not self._closed:
                self._spare = spare
                return spare is not None
        spare.close()
        return True

    def _take_spare(self) -> WorkerConnection | None:
        """The standby, if any; one still starting is waited for.

        Starting a second process instead would only compete with the
        standby's start for the CPU, and lose.
        """
        with self._lock:
            self._spare_ready.wait_for(
                lambda: not self._spare_starting or self._closed,
                timeout=self.spec.worker.startup_timeout,
            )
            spare, self._spare = self._spare, None
        if spare is not None and not spare.endpoint.alive():
            spare.close()
            return None
        return spare


def _units(request: pb.ScoreRequest) -> int:
    """The request's work for the deadline: its new tokens for a generate, else 1.

    Read off the message (a field lookup), not by decoding the whole request
    on every call.
    """
    if request.WhichOneof("op") == "generate":
        return max(1, request.generate.max_new_tokens)
    return 1


def _describe(request: pb.ScoreRequest) -> str:
    """A short, readable name for a request, for error messages."""
    decoded = request_from_proto(request)
    op = decoded.op
    text = str(getattr(op, "prompt", getattr(op, "text", "")))
    shown = text if len(text) <= 60 else text[:57] + "..."
    return f"{op.name}({shown!r}) on view {decoded.view.label()}"


def _close_all_at_exit() -> None:
    for supervisor in list(_LIVE):
        supervisor.close()


atexit.register(_close_all_at_exit)
