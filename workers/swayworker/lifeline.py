"""Make a worker die with its host, whatever way the host goes, whatever the worker is doing.

Three independent signals, because each alone has a hole:

* stdin EOF: the host keeps the write end of our stdin open and never
  writes; when the host process dies for any reason the kernel closes it.
* ``PR_SET_PDEATHSIG`` (Linux): the kernel signals us when the parent
  *thread* that forked us exits. A host that spawns from a worker thread
  would trigger it early, so the signal only ends the worker once
  ``getppid()`` shows we were really re-parented.
* a ``getppid()`` poll beside the stdin watch, for a worker whose stdin a
  wrapper command (``sh -c``) handed elsewhere and a platform without prctl.

Noticing is not enough: a worker whose Load or call blocks (a hung model
download, an import that never returns) cannot finish a clean stop, since
closing the backend waits for the model thread. So once the host is gone
the worker has ``ORPHAN_EXIT_GRACE_S`` to stop cleanly; then a watchdog
thread, which no Load or call can block, removes what it must and exits,
taking its process group (whatever it started) with it.

Opting out is explicit: a worker started with ``SWAY_WORKER_DETACHED=1``
(a detached worker a later host reattaches to, or a long-lived service)
watches none of these, and ends only on Shutdown or a signal.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable

from swayworker.protocol import DETACHED_ENV, HOST_PID_ENV

log = logging.getLogger("swayworker")

_PR_SET_PDEATHSIG = 1

ORPHAN_EXIT_GRACE_S = 2.0
"""How long an orphaned worker may take to stop cleanly before it exits anyway."""

PARENT_POLL_S = 0.5
"""How often the watch thread checks ``getppid()`` between reads of stdin."""


def host_pid() -> int | None:
    """The pid the host said it has, if it said so."""
    value = os.environ.get(HOST_PID_ENV, "")
    return int(value) if value.isdigit() else None


def orphaned(expected_parent: int | None) -> bool:
    """True when the process that started us is gone."""
    if expected_parent is None:
        return False
    return os.getppid() != expected_parent


def parent_to_watch(host: int | None) -> int | None:
    """The process whose exit means the host is gone: the host, or a wrapper it started.

    A worker behind a wrapper command (``sh -c 'python -m ...'``) has the
    shell as its parent while the host lives; the shell goes with the host
    (the host stops the worker's whole process group), so watching it is
    watching the host. Only a host pid that no longer exists means orphaned.
    """
    parent = os.getppid()
    if host is None or parent == host or not _exists(host):
        return host
    return parent


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def detached() -> bool:
    """Whether this worker was started to outlive whoever started it."""
    return os.environ.get(DETACHED_ENV) == "1"


def watch_parent(
    on_parent_gone: Callable[[str], None], *, before_exit: Callable[[], None] | None = None
) -> None:
    """Call ``on_parent_gone(reason)`` when the host goes away (never when detached).

    If the process is still alive ``ORPHAN_EXIT_GRACE_S`` later, ``before_exit``
    runs (e.g. removing the socket folder) and the process exits with its group.
    """
    if detached():
        log.info("detached: this worker outlives its host; Shutdown or SIGTERM stops it")
        return
    expected = parent_to_watch(host_pid())
    gone = _first_call_only(on_parent_gone, before_exit)
    arm_parent_death(expected, gone)
    if orphaned(expected):
        gone("host exited before the worker started")
        return
    thread = threading.Thread(target=_watch, args=(expected, gone), name="lifeline", daemon=True)
    thread.start()


def _first_call_only(
    on_parent_gone: Callable[[str], None], before_exit: Callable[[], None] | None
) -> Callable[[str], None]:
    """``on_parent_gone`` once (any of the three signals may come first), then the deadline.

    The lock is only ever tried, never waited for: the parent-death signal
    runs this in a handler on the main thread, which may already be inside it.
    """
    fired = threading.Lock()

    def gone(reason: str) -> None:
        if not fired.acquire(blocking=False):
            return
        exit_soon(reason, before_exit)
        on_parent_gone(reason)

    return gone


def _watch(expected: int | None, gone: Callable[[str], None]) -> None:
    # os.read on the raw fd, not sys.stdin: a daemon thread blocked inside a
    # buffered reader holds its lock and aborts interpreter shutdown.
    while True:
        try:
            readable, _, _ = select.select([0], [], [], PARENT_POLL_S)
            if readable and not os.read(0, 4096):
                gone("stdin closed (host went away)")
                return
        except (OSError, ValueError):
            gone("stdin closed (host went away)")
            return
        if orphaned(expected):
            gone(f"the host (pid {expected}) is gone")
            return


def exit_soon(reason: str, before_exit: Callable[[], None] | None) -> None:
    """Exit ``ORPHAN_EXIT_GRACE_S`` from now unless a clean stop exits first.

    For any stop nobody will escalate: the host's death, or a signal from a
    user (``kill PID``) while a Load or call blocks the clean stop.
    """
    threading.Thread(
        target=_exit_after_grace, args=(reason, before_exit), name="exit-soon", daemon=True
    ).start()


def _exit_after_grace(reason: str, before_exit: Callable[[], None] | None) -> None:
    """Exit, with the process group, if a clean stop has not done so within the grace."""
    time.sleep(ORPHAN_EXIT_GRACE_S)
    log.warning(
        "still running %.0fs after %s (a Load or call is blocking): exiting now",
        ORPHAN_EXIT_GRACE_S,
        reason,
    )
    if before_exit is not None:
        with contextlib.suppress(Exception):
            before_exit()
    sys.stderr.flush()
    if os.getpgrp() == os.getpid():  # our own group (the host starts each worker in one)
        with contextlib.suppress(OSError):
            os.killpg(0, signal.SIGKILL)
    os._exit(1)


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
