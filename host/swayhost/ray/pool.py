"""Spreading an evaluation of many adapters over a few Ray-placed workers.

Starting a worker costs far more than switching its adapter (an HF worker
spends seconds importing torch before it loads anything), so a pool keeps
``size`` workers, each in its own Ray actor, and runs one adapter after
another on each: a task takes a free worker, Loads its spec there, runs the
caller's function on the backend, and hands the worker back. Tasks run in
parallel, one per worker; results come back in the order of the specs.

Loading a base costs more than Loading an adapter onto the base a worker
already holds, so a task goes to a worker that holds its base (``base_key``)
when one is free, waits for one that is busy rather than make another
worker switch bases, and otherwise takes a worker that never loaded that
base: a run of N adapters loads each base at most once per worker.
``map`` also runs the specs grouped by base.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import ray
from ray.actor import ActorHandle
from ray.exceptions import RayError

from swayhost.launch import launch
from swayhost.proxy import RemoteBackend
from swayhost.ray.actor import WorkerActor
from swayhost.ray.endpoint import CONTROL_TIMEOUT_S, RayEndpoint, place
from swayhost.spec import ModelSpec, WorkerOptions, base_key

T = TypeVar("T")


class _LoadFailed(Exception):
    """A spec's Load failed on a pool worker (``error`` says why); the worker stays usable."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(frozen=True)
class _Slot:
    actor: ActorHandle[WorkerActor]
    token: str
    name: str


@dataclass(frozen=True)
class _PooledLauncher:
    """The worker of one pool slot; it stays in its actor for the next spec."""

    slot: _Slot
    options: WorkerOptions

    def endpoint(self) -> RayEndpoint:
        return RayEndpoint(
            self.slot.actor,
            token=self.slot.token,
            name=self.slot.name,
            startup_timeout=self.options.startup_timeout,
            tls=self.options.ray.tls,
        )


class RayWorkerPool:
    """``size`` workers of one ``kind``, each in a Ray actor placed per ``worker.ray``."""

    def __init__(self, kind: str, size: int, worker: WorkerOptions | None = None) -> None:
        if size < 1:
            raise ValueError(f"a pool needs at least one worker, got size={size}")
        self.kind = kind
        self._options = worker or WorkerOptions(launcher="ray")
        self._slots: list[_Slot] = []
        self._free: list[_Slot] = []
        """Free workers, the one freed longest ago first."""
        self._holds: dict[str, bytes | None] = {}
        """The base (``base_key``) each worker holds, by worker name."""
        self._loaded: Counter[tuple[str, bytes]] = Counter()
        self._changed = threading.Condition()
        for index in range(size):
            name = f"{kind}-ray-{index}"
            template = ModelSpec(base="", kind=kind, worker=self._options)
            slot = _Slot(place(template, name=name), secrets.token_urlsafe(32), name)
            self._slots.append(slot)
            self._free.append(slot)
            self._holds[name] = None

    @contextmanager
    def backend(self, spec: ModelSpec) -> Iterator[RemoteBackend]:
        """``spec`` loaded on a free worker, preferably one holding its base, for the block."""
        key = self._key(spec)
        with self._changed:
            while (slot := self._pick(key)) is None:
                self._changed.wait()
            self._free.remove(slot)
        try:
            with self._loaded_on(slot, spec, key) as backend:
                yield backend
        except _LoadFailed as failed:
            raise failed.error from None
        finally:
            self._release(slot)

    def map(
        self,
        fn: Callable[[RemoteBackend], T],
        specs: Sequence[ModelSpec],
        *,
        on_load_error: Callable[[ModelSpec, Exception], T] | None = None,
    ) -> list[T]:
        """``fn(backend)`` for every spec, as many at once as there are workers; in order.

        Each worker takes, in turn, the next spec of the base it holds, else
        one of a base no worker holds, else the next: since every spec is
        known up front, a worker never comes back to a base it left, so
        each base loads at most once per worker. With ``on_load_error`` a
        spec that fails to Load gives ``on_load_error(spec, exc)`` instead
        of ending the map.
        """
        keys = [self._key(spec) for spec in specs]
        pending = list(range(len(specs)))
        results: dict[int, T] = {}

        def take(slot: _Slot) -> int | None:
            with self._changed:
                if not pending:
                    return None
                held = {self._holds[s.name] for s in self._slots}
                mine = [i for i in pending if keys[i] == self._holds[slot.name]]
                unheld = [i for i in pending if keys[i] not in held]
                index = (mine or unheld or pending)[0]
                pending.remove(index)
                self._hold(slot, keys[index])  # now, so the next take sees the base as held
                return index

        def work() -> None:
            with self._changed:
                while not self._free:
                    self._changed.wait()
                slot = self._free.pop(0)
            try:
                while (index := take(slot)) is not None:
                    results[index] = self._run(slot, specs[index], keys[index], fn, on_load_error)
            finally:
                self._release(slot)

        workers = min(len(self._slots), len(specs))
        if workers:
            with ThreadPoolExecutor(max_workers=workers) as executor:
                for done in [executor.submit(work) for _ in range(workers)]:
                    done.result()
        return [results[i] for i in range(len(specs))]

    def base_loads(self) -> dict[str, dict[bytes, int]]:
        """How often each worker was handed a base it did not hold, by worker and ``base_key``."""
        with self._changed:
            loads: dict[str, dict[bytes, int]] = {slot.name: {} for slot in self._slots}
            for (name, key), count in self._loaded.items():
                loads[name][key] = count
            return loads

    def _key(self, spec: ModelSpec) -> bytes:
        if spec.kind != self.kind:
            raise ValueError(f"this pool runs {self.kind!r} workers; the spec is {spec.kind!r}")
        return base_key(spec.to_proto())

    def _run(
        self,
        slot: _Slot,
        spec: ModelSpec,
        key: bytes,
        fn: Callable[[RemoteBackend], T],
        on_load_error: Callable[[ModelSpec, Exception], T] | None,
    ) -> T:
        try:
            with self._loaded_on(slot, spec, key) as backend:
                return fn(backend)
        except _LoadFailed as failed:
            if on_load_error is None:
                raise failed.error from None
            return on_load_error(spec, failed.error)

    @contextmanager
    def _loaded_on(self, slot: _Slot, spec: ModelSpec, key: bytes) -> Iterator[RemoteBackend]:
        """``spec`` Loaded on ``slot``'s worker, noting the base it now holds."""
        with self._changed:
            self._hold(slot, key)
        try:
            backend = launch(spec, _PooledLauncher(slot, self._options))
        except Exception as exc:
            with self._changed:
                self._holds[slot.name] = None  # a failed Load may leave it holding nothing
            raise _LoadFailed(exc) from exc
        with backend:
            yield backend

    def _hold(self, slot: _Slot, key: bytes) -> None:
        """Note that ``slot``'s worker holds base ``key`` (counted when it is new); locked."""
        if self._holds[slot.name] != key:
            self._loaded[slot.name, key] += 1
            self._holds[slot.name] = key

    def _pick(self, key: bytes) -> _Slot | None:
        """The free worker for a spec of base ``key``, or None to wait for a busy one."""
        holds = self._holds
        for candidates in (
            [s for s in self._free if holds[s.name] == key],
            [s for s in self._free if holds[s.name] is None],
        ):
            if candidates:
                return candidates[0]
        if any(holds[s.name] == key for s in self._slots):
            return None  # a busy worker holds the base: wait for it rather than load it again
        return self._free[0] if self._free else None

    def _release(self, slot: _Slot) -> None:
        with self._changed:
            self._free.append(slot)
            self._changed.notify_all()

    def close(self, grace: float = 5.0) -> None:
        """End every worker (SIGTERM, then SIGKILL after ``grace`` s), then its actor.

        The workers are stopped first and waited for, so none outlives this
        call; killing the actor alone would leave its worker to notice later.
        """
        stopping = [slot.actor.stop_worker.remote(grace) for slot in self._slots]
        with contextlib.suppress(RayError):  # an actor already gone took its worker along
            ray.get(stopping, timeout=grace + CONTROL_TIMEOUT_S)
        for slot in self._slots:
            ray.kill(slot.actor)
        self._slots.clear()

    def __enter__(self) -> RayWorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def evaluate_adapters(
    specs: Sequence[ModelSpec],
    fn: Callable[[RemoteBackend], T],
    *,
    workers: int = 2,
    worker: WorkerOptions | None = None,
) -> list[T]:
    """``fn(backend)`` for each spec (one adapter each), spread over ``workers`` Ray workers.

    The specs must share a kind; ``worker.ray`` says where Ray places the
    workers (resources, runtime_env). Results are in the order of ``specs``.
    """
    if not specs:
        return []
    kinds = {spec.kind for spec in specs}
    if len(kinds) != 1:
        raise ValueError(f"evaluate_adapters needs specs of one kind, got {sorted(kinds)}")
    with RayWorkerPool(specs[0].kind, min(workers, len(specs)), worker) as pool:
        return pool.map(fn, specs)
