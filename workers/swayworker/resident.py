"""Several adapters of one base held at once: an LRU that evicts only idle ones.

A sweep scores many adapters (every checkpoint of a run) against one base.
Loading the base once and the adapters beside it costs one model in memory
plus a few megabytes per adapter, instead of one model per adapter. Memory
stays bounded by a limit on the adapters held; past it the least recently
used adapter that no view is using is dropped, and loaded again if a
request names it later, so evicting one never fails a call: it costs a
reload, not a result. An adapter in use (pinned by an entered view) is never
evicted; when every adapter is in use the limit is exceeded for a while
rather than a call dropped.

``ResidentAdapters`` is the bookkeeping only, framework-free; a backend
passes how to load and unload one adapter. ``AdapterOf`` is one resident
adapter seen as a full sway differential backend (its four views, its own
cache identity), sharing the owner's weights and its one active-view slot.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from swayworker import preflight
from swayworker.errors import BadSpec
from swayworker.views import AdapterViews, ViewSlot

log = logging.getLogger("swayworker")

T = TypeVar("T")
V = TypeVar("V")
V_co = TypeVar("V_co", covariant=True)

DEFAULT_MAX_RESIDENT = 8
"""Adapters held at once unless the spec's ``max_resident_adapters`` option says otherwise."""
LIMIT_OPTION = "max_resident_adapters"


def resident_limit(options: dict[str, str]) -> int:
    """The ``max_resident_adapters`` option of a spec, checked (a positive integer)."""
    raw = options.get(LIMIT_OPTION, str(DEFAULT_MAX_RESIDENT))
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if limit < 1:
        raise BadSpec(
            f"option {LIMIT_OPTION}={raw!r} is not a positive integer; set it to how many "
            f"adapters the worker may hold at once (default {DEFAULT_MAX_RESIDENT})"
        )
    return limit


@dataclass
class _Entry(Generic[T]):
    value: T
    pins: int = 0


class ResidentAdapters(Generic[T]):
    """The adapters held now, keyed by path, least recently used first."""

    def __init__(
        self, limit: int, load: Callable[[str], T], unload: Callable[[str, T], None]
    ) -> None:
        self.limit = limit
        self._load = load
        self._unload = unload
        self._entries: OrderedDict[str, _Entry[T]] = OrderedDict()
        self._lock = threading.RLock()
        self.evictions = 0

    def __contains__(self, path: object) -> bool:
        return path in self._entries

    def paths(self) -> list[str]:
        """The resident adapters, least recently used first."""
        return list(self._entries)

    def add(self, path: str, value: T) -> None:
        """Record an adapter the backend loaded itself (its first, with the base)."""
        with self._lock:
            self._entries[path] = _Entry(value)
            self._evict(keep=path)

    def get(self, path: str) -> T:
        """The adapter at ``path``, loaded now if it is not resident (evicting idle ones).

        A failed load leaves the others as they were and raises.
        """
        with self._lock:
            entry = self._entries.get(path)
            if entry is None:
                entry = _Entry(self._load(path))
                self._entries[path] = entry
                log.info("loaded adapter %s (%d resident)", path, len(self._entries))
            self._entries.move_to_end(path)
            self._evict(keep=path)
            return entry.value

    @contextmanager
    def pinned(self, path: str) -> Iterator[T]:
        """``path``'s adapter, safe from eviction for the block."""
        with self._lock:
            value = self.get(path)
            self._entries[path].pins += 1
        try:
            yield value
        finally:
            with self._lock:
                entry = self._entries.get(path)
                if entry is not None:
                    entry.pins -= 1
                self._evict(keep=None)  # plain LRU order now: it may well be the oldest

    def rekey(self, old: str, new: str, value: T) -> None:
        """``old``'s slot now holds the adapter at ``new`` (its tensors were overwritten)."""
        with self._lock:
            entry = self._entries.pop(old)
            entry.value = value
            self._entries[new] = entry
            log.info("adapter %s overwrote %s in place", new, old)

    def keep_only(self, path: str) -> T:
        """Load ``path`` and drop every other idle adapter (a swap)."""
        with self._lock:
            value = self.get(path)
            for other in [p for p, e in self._entries.items() if p != path and not e.pins]:
                self._drop(other)
            return value

    def clear(self) -> None:
        with self._lock:
            for path in list(self._entries):
                self._drop(path)

    def _evict(self, *, keep: str | None) -> None:
        """Drop least recently used idle adapters until the limit holds (never ``keep``)."""
        for path in list(self._entries):
            if len(self._entries) <= self.limit:
                return
            if path != keep and not self._entries[path].pins:
                self._drop(path)
                self.evictions += 1
                log.info("evicted adapter %s, the least recently used idle one", path)

    def _drop(self, path: str) -> None:
        entry = self._entries.pop(path)
        self._unload(path, entry.value)


class ResidentOwner(Protocol[V_co]):
    """What a backend holding several adapters offers ``AdapterOf``."""

    _slot: ViewSlot

    def selected(self, path: str) -> AbstractContextManager[object]:
        """``path``'s adapter resident, pinned and active on the model for the block."""

    def identity_of(self, path: str) -> str:
        """The cache identity a fresh backend with adapter ``path`` would report."""

    def _make_view(self, view_id: str) -> V_co: ...
    def _adapter_off(self) -> AbstractContextManager[object]: ...
    def _adapter_scaled(self, lam: float) -> AbstractContextManager[object]: ...
    def _adapter_noise(self, seed: int, std: float) -> AbstractContextManager[object]: ...


class AdapterOf(AdapterViews[V]):
    """One resident adapter of ``owner``, as a whole sway differential backend.

    Its views are the owner's views with this adapter selected first; its
    facts (vocab size, device, limits, versions) are the owner's, since the
    base is shared; its cache identity is the one a fresh backend with this
    adapter would have, so caches and journals key it the same way.
    """

    def __init__(self, owner: ResidentOwner[V], path: str) -> None:
        self._owner = owner
        self.adapter_path = path
        self._slot = owner._slot

    def __getattr__(self, name: str) -> Any:
        # Only names not found on this class: the shared facts of the base.
        return getattr(self._owner, name)

    def cache_identity(self) -> str:
        return self._owner.identity_of(self.adapter_path)

    def preflight_finite_check(self) -> tuple[bool, str]:
        """sway's check, on this adapter's views."""
        return preflight.check_base_and_ft(self)

    @contextmanager
    def _view(self, mode: str, view_id: str) -> Iterator[V]:
        with self._slot.claim(mode), self._owner.selected(self.adapter_path):
            yield self._owner._make_view(view_id)

    def _make_view(self, view_id: str) -> V:
        return self._owner._make_view(view_id)

    def _adapter_off(self) -> AbstractContextManager[object]:
        return self._owner._adapter_off()

    def _adapter_scaled(self, lam: float) -> AbstractContextManager[object]:
        return self._owner._adapter_scaled(lam)

    def _adapter_noise(self, seed: int, std: float) -> AbstractContextManager[object]:
        return self._owner._adapter_noise(seed, std)
