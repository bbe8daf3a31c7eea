"""User backends that fail on one input the way real ones do, for the recovery tests.

Each scores every prompt deterministically except ``POISON``: ``Segfaulting``
dies of SIGSEGV on it, ``MemoryHog`` runs under an address-space limit
(RLIMIT_AS, set when the backend is built) and allocates until the limit
stops it.
"""

from __future__ import annotations

import hashlib
import os
import resource
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

POISON = "poison"
HEADROOM = 512 * 1024 * 1024
"""Address space the memory hog may take beyond what the worker has when it loads."""
CHUNK = 64 * 1024 * 1024


class _View:
    id = "view"

    def __init__(self, offset: float, on_poison: Any) -> None:
        self._offset = offset
        self._on_poison = on_poison

    def logprob_of(self, prompt: str, completion: str) -> float:
        if prompt == POISON:
            self._on_poison()
        digest = hashlib.sha256(f"{prompt}\0{completion}".encode()).digest()
        return -int.from_bytes(digest[:4], "little") / 2**32 * 10 + self._offset


class _Faulty:
    """Differential, logprob_of only; ``_on_poison`` says how it fails."""

    def __init__(self, *, base_spec: Any, adapter_path: Any) -> None:
        self.base = base_spec.base

    def operations(self) -> list[str]:
        return ["logprob_of"]

    @contextmanager
    def as_base(self) -> Iterator[_View]:
        yield _View(0.0, self._on_poison)

    @contextmanager
    def as_finetuned(self) -> Iterator[_View]:
        yield _View(1.0, self._on_poison)

    def _on_poison(self) -> None:
        raise NotImplementedError


class Segfaulting(_Faulty):
    def _on_poison(self) -> None:
        os.kill(os.getpid(), signal.SIGSEGV)
        # A real segfault stops the faulting thread on the spot. A SIGSEGV sent
        # with kill() is handled on the main thread (the SDK's faulthandler dumps
        # the tracebacks, then the process dies), so this thread must not go on
        # and answer in the meantime.
        threading.Event().wait()


class MemoryHog(_Faulty):
    def __init__(self, *, base_spec: Any, adapter_path: Any) -> None:
        super().__init__(base_spec=base_spec, adapter_path=adapter_path)
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        resource.setrlimit(resource.RLIMIT_AS, (_address_space() + HEADROOM, hard))

    def _on_poison(self) -> None:
        hoard = []
        while True:
            hoard.append(np.ones(CHUNK, dtype=np.uint8))


def _address_space() -> int:
    """This process's virtual memory size in bytes (VmSize)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize in /proc/self/status")
