"""An in-memory LRU of scoring results, bounded by bytes.

sway's probes ask the same question more than once (a prompt scored for
several probes, a calibration re-run); a worker round trip costs a
serialisation and a forward pass, a cache hit a dictionary lookup. Results
are kept as the worker's ``ScoreResponse`` messages, keyed like the journal
(``journal.request_key``), so a journal hit can fill the cache and a hit is
decoded afresh each time: callers never share (and so can never corrupt)
one another's numpy arrays.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from swayplugin.v1 import backend_pb2 as pb

_ENTRY_OVERHEAD = 200
"""Bytes charged per entry on top of the message: the key, the dict slot, the object."""


class ResultCache:
    """A thread-safe LRU of ``ScoreResponse`` by key, holding at most ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"cache size must be >= 0 bytes, got {max_bytes}")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[pb.ScoreResponse, int]] = OrderedDict()
        self._used = 0
        self._lock = threading.Lock()

    @property
    def used_bytes(self) -> int:
        return self._used

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> pb.ScoreResponse | None:
        """The response stored under ``key`` (now the most recently used), or None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self._entries.move_to_end(key)
            return entry[0]

    def put(self, key: str, response: pb.ScoreResponse) -> None:
        """Store ``response``, evicting least recently used entries to stay within bounds.

        A single response larger than the whole cache is not stored at all.
        """
        size = response.ByteSize() + len(key) + _ENTRY_OVERHEAD
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._used -= old[1]
            self._entries[key] = (response, size)
            self._used += size
            while self._used > self.max_bytes:
                _, (_, evicted) = self._entries.popitem(last=False)
                self._used -= evicted
