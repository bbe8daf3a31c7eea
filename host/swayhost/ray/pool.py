"""Spreading an evaluation of many adapters over a few Ray-placed workers.

Starting a worker costs far more than switching its adapter (an HF worker
spends seconds importing torch before it loads anything), so a pool keeps
``size`` workers, each in its own Ray actor, and runs one adapter after
another on each: a task takes a free worker, Loads its spec there (the
worker replaces its model), runs the caller's function on the backend, and
hands the worker back. Tasks run in parallel, one per worker; results come
back in the order of the specs.
"""

from __future__ import annotations

import contextlib
import queue
import secrets
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
from swayhost.spec import ModelSpec, WorkerOptions

T = TypeVar("T")


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
        self._free: queue.Queue[_Slot] = queue.Queue()
        self._slots: list[_Slot] = []
        for index in range(size):
            name = f"{kind}-ray-{index}"
            template = ModelSpec(base="", kind=kind, worker=self._options)
            slot = _Slot(place(template, name=name), secrets.token_urlsafe(32), name)
            self._slots.append(slot)
            self._free.put(slot)

    @contextmanager
    def backend(self, spec: ModelSpec) -> Iterator[RemoteBackend]:
        """``spec`` loaded on the next free worker, for the length of the block."""
        if spec.kind != self.kind:
            raise ValueError(f"this pool runs {self.kind!r} workers; the spec is {spec.kind!r}")
        slot = self._free.get()
        try:
            backend = launch(spec, _PooledLauncher(slot, self._options))
            with backend:
                yield backend
        finally:
            self._free.put(slot)

    def map(self, fn: Callable[[RemoteBackend], T], specs: Sequence[ModelSpec]) -> list[T]:
        """``fn(backend)`` for every spec, as many at once as there are workers; in order."""

        def run(spec: ModelSpec) -> T:
            with self.backend(spec) as backend:
                return fn(backend)

        with ThreadPoolExecutor(max_workers=len(self._slots)) as executor:
            return list(executor.map(run, specs))

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
