"""One thread for all of a backend's framework work, whatever thread gRPC hands a call to.

gRPC runs each RPC on a thread of its handler pool. A backend that ran its
forward passes there would run them on whichever of those threads took the
call, and torch (like any OpenMP program) gives every thread that computes a
pool of intra-op threads of its own. With calls landing on four or eight
handler threads a worker held that many pools, each sized to every core, and
they fought for the cores: on a 2-core machine at torch's default threads a
50M-parameter forward pass cost 8-14 ms more through the worker than in
process, where one thread does all the work (measured in
``docs/performance.md``).

So a backend whose calls are serialised anyway (one not safe for concurrent
views: every call enters a shared view) runs Load, every call, Preflight and
close on one ``ModelThread``, as an in-process caller would run them on its
one thread. The thread also makes the serialisation: only one job runs at a
time, so no lock is needed around the held view. Handler threads only decode
requests, wait, and encode replies. Thread settings are the user's: this
thread starts with whatever ``OMP_NUM_THREADS`` or a backend's own
``torch.set_num_threads`` (called in its constructor, which runs here too)
decided.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

log = logging.getLogger("swayworker")

T = TypeVar("T")

_Job = tuple[Callable[[], object], "Future[object] | None"]
"""A job and the future its caller waits on (None: nobody waits, see ``submit``)."""


class ModelThread:
    """A single long-lived thread that runs submitted jobs one after another."""

    def __init__(self, name: str = "model") -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the model thread and return its result (or raise its exception).

        A call made from the model thread itself (a job that calls back in)
        runs at once, or it would wait for itself.
        """
        if threading.current_thread() is self._thread:
            return fn()
        done: Future[object] = Future()
        self._jobs.put((fn, done))
        return done.result()  # type: ignore[return-value]

    def submit(self, fn: Callable[[], object]) -> None:
        """Queue ``fn`` behind the jobs already queued and return at once.

        For work that delivers its own result (the framed path writes its
        reply to the socket from here), so no thread waits to pass it on. An
        exception ``fn`` lets out is logged: it has no caller to reach.
        """
        self._jobs.put((fn, None))

    def stop(self) -> None:
        """Let the thread finish the jobs queued so far, then end."""
        self._jobs.put(None)

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            fn, done = job
            if done is None:
                try:
                    fn()
                except Exception:
                    log.exception("a job submitted to the model thread failed")
                continue
            if not done.set_running_or_notify_cancel():
                continue
            try:
                done.set_result(fn())
            except BaseException as exc:  # handed to the caller, who re-raises it
                done.set_exception(exc)
