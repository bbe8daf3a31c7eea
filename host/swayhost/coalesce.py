"""Dynamic batching: concurrent calls on one worker travel as one ScoreBatch.

A unary RPC costs a few hundred microseconds of gRPC overhead and one
forward pass; a batch of n costs that overhead once and one padded pass. So
when many threads score at once (sway with ``concurrent_probes > 1``), the
host coalesces their calls, with a leader/follower scheme that never delays
a lone caller:

* a caller that finds nothing in flight, while the last batch was a single
  call, sends its request at once, unary: a single-threaded caller never
  waits;
* callers arriving while an RPC is in flight queue up; when the RPC ends,
  the oldest queued caller becomes the leader and sends the queue as one
  batch (bounded by ``max_items`` and a byte budget), then hands over to the
  next queued caller, if any;
* a leader waits up to ``window_s`` for as many callers as its predecessor
  answered to come back, so steady concurrent load settles into full batches
  rather than alternating a batch with a single. When the load ends, one
  call pays that window and the next ones go unary again. The caller that
  completes the batch wakes the leader; the ones before it do not, since a
  wake-up per arrival made eight callers cost the leader seven trips through
  the GIL for nothing.

Each batch is handed to ``send_many`` as one fixed list, so the supervisor's
crash retry resends the same items in the same order.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

Req = TypeVar("Req")
Resp = TypeVar("Resp")


class _Entry(Generic[Req, Resp]):
    __slots__ = ("cost", "error", "lead", "request", "response", "wake")

    def __init__(self, request: Req, cost: int) -> None:
        self.request = request
        self.cost = cost
        self.wake = threading.Event()
        self.lead = False
        self.response: Resp | None = None
        self.error: BaseException | None = None


class Coalescer(Generic[Req, Resp]):
    """Turns concurrent ``submit`` calls into unary sends or batched sends."""

    def __init__(
        self,
        send_one: Callable[[Req], Resp],
        send_many: Callable[[list[Req]], Sequence[Resp | BaseException]],
        *,
        max_items: int,
        max_cost: int,
        window_s: float,
    ) -> None:
        self._send_one = send_one
        self._send_many = send_many
        self._max_items = max(1, max_items)
        self._max_cost = max(1, max_cost)
        self._window_s = window_s
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._queue: deque[_Entry[Req, Resp]] = deque()
        self._busy = False
        self._last_batch = 1
        self._awaited = 0
        """How many queued callers the gathering leader waits for (0: none is gathering)."""

    def submit(self, request: Req, cost: int) -> Resp:
        """The response to ``request``, sent alone or in a batch; its error is raised.

        ``cost`` is the request's estimated share of a batch's ``max_cost``.
        """
        entry: _Entry[Req, Resp] = _Entry(request, cost)
        with self._lock:
            lone = not self._busy and self._last_batch <= 1
            if not lone:
                self._queue.append(entry)
                if len(self._queue) >= self._awaited:  # wake the leader once, when it is full
                    self._arrived.notify()
                if not self._busy:  # recent concurrency: lead a batch at once
                    entry.lead = True
                    entry.wake.set()
            self._busy = True
        if lone:
            try:
                return self._send_one(request)
            finally:
                self._hand_over()
        entry.wake.wait()
        if entry.lead:
            self._lead(entry)
        if entry.error is not None:
            raise entry.error
        return entry.response  # type: ignore[return-value]

    def _lead(self, entry: _Entry[Req, Resp]) -> None:
        """Send the queue (``entry`` first) as one batch, then pass the lead on."""
        try:
            batch = self._take_batch()
            try:
                if len(batch) == 1:
                    responses: Sequence[Resp | BaseException] = [self._send_one(batch[0].request)]
                else:
                    responses = self._send_many([e.request for e in batch])
            except BaseException as exc:
                for e in batch:
                    e.error = exc
            else:
                for e, response in zip(batch, responses, strict=True):
                    if isinstance(response, BaseException):
                        e.error = response
                    else:
                        e.response = response
            for e in batch:
                if e is not entry:
                    e.wake.set()
        finally:
            self._hand_over()

    def _take_batch(self) -> list[_Entry[Req, Resp]]:
        """The queue's head (the leader itself) and the callers behind it, within limits."""
        with self._lock:
            deadline = time.monotonic() + self._window_s
            expected = min(self._max_items, self._last_batch)
            self._awaited = expected
            while len(self._queue) < expected:
                left = deadline - time.monotonic()
                if left <= 0 or not self._arrived.wait(left):
                    break
            self._awaited = 0
            batch: list[_Entry[Req, Resp]] = []
            used = 0
            while self._queue and len(batch) < self._max_items:
                nxt = self._queue[0]
                if batch and used + nxt.cost > self._max_cost:
                    break
                batch.append(self._queue.popleft())
                used += nxt.cost
            self._last_batch = len(batch)
        return batch

    def _hand_over(self) -> None:
        """End a send: wake the oldest queued caller as the next leader, or go idle."""
        with self._lock:
            if self._queue:
                nxt = self._queue[0]
                nxt.lead = True
                nxt.wake.set()
            else:
                self._busy = False
