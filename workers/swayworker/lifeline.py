"""Make a worker die with its host, whatever way the host goes.

Two independent signals, because either alone has a hole:

* stdin EOF: the host keeps the write end of our stdin open and never
  writes; when the host process dies for any reason the kernel closes it.
* ``PR_SET_PDEATHSIG`` (Linux): the kernel signals us when the parent
  *thread* that forked us exits. A host that spawns from a worker thread
  would trigger it early, so the signal only ends the worker once
  ``getppid()`` shows we were really re-parented.

Opting out is explicit: a worker started with ``SWAY_WORKER_DETACHED=1``
(a detached worker a later host reattaches to, or a long-lived service)
watches neither, and ends only on Shutdown or a signal.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable

from swayworker.protocol import DETACHED_ENV, HOST_PID_ENV

log = logging.getLogger("swayworker")

_PR_SET_PDEATHSIG = 1


def host_pid() -> int | None:
    """The pid the host said it has, if it said so."""
    value = os.environ.get(HOST_PID_ENV, "")
    return int(value) if value.isdigit() else None


def orphaned(expected_parent: int | None) -> bool:
    """True when the process that started us is gone."""
    if expected_parent is None:
        return False
    return os.getppid() != expected_parent


def detached() -> bool:
    """Whether this worker was started to outlive whoever started it."""
    return os.environ.get(DETACHED_ENV) == "1"


def watch_parent(on_parent_gone: Callable[[str], None]) -> None:
    """Call ``on_parent_gone(reason)`` when the host goes away (never when detached)."""
    if detached():
        log.info("detached: this worker outlives its host; Shutdown or SIGTERM stops it")
        return
    expected = host_pid()
    arm_parent_death(expected, on_parent_gone)
    if orphaned(expected):
        on_parent_gone("host exited before the worker started")
        return
    thread = threading.Thread(
        target=_wait_for_stdin_eof, args=(on_parent_gone,), name="lifeline", daemon=True
    )
    thread.start()


def _wait_for_stdin_eof(on_parent_gone: Callable[[str], None]) -> None:
    # os.read on the raw fd, not sys.stdin: a daemon thread blocked inside a
    # buffered reader holds its lock and aborts interpreter shutdown.
    try:
        while os.read(0, 4096):
            pass
    except OSError:
        pass
    on_parent_gone("stdin closed (host went away)")


def arm_parent_death(expected: int | None, on_parent_gone: Callable[[str], None]) -> None:
    """Linux: call ``on_parent_gone`` when process ``expected``, our parent, dies.

    The kernel's parent-death signal fires when the parent *thread* exits,
    so a host that starts us from a thread pool would end us as soon as the
    pool shuts down; the handler therefore acts only once ``getppid()``
    shows that the parent process itself is gone.
    """
    if not sys.platform.startswith("linux") or expected is None:
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGUSR2), 0, 0, 0) != 0:
            log.debug("prctl(PR_SET_PDEATHSIG) failed: errno %d", ctypes.get_errno())
            return
    except (OSError, AttributeError):
        return

    def _on_signal(signum: int, frame: object) -> None:
        if orphaned(expected):
            on_parent_gone("parent-death signal (host exited)")

    signal.signal(signal.SIGUSR2, _on_signal)
