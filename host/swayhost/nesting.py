"""A worker never starts workers: the refusal that stops a chain of them.

A custom backend's module and the script that drives it are often one file.
Without an ``if __name__ == "__main__":`` guard, the worker that imports the
module to find the class also runs the driver, which builds a backend, whose
worker imports the module... each worker starting the next, outliving every
host. ``serve()`` marks each worker's environment (``IN_WORKER_ENV``); every
host entry that starts a worker calls ``refuse_inside_worker`` first.
"""

from __future__ import annotations

import os

from swayworker.protocol import IN_WORKER_ENV

from swayhost.errors import WorkerStartError


def refuse_inside_worker(action: str) -> None:
    """Raise ``WorkerStartError`` naming the fix if this process is a sway worker."""
    mark = os.environ.get(IN_WORKER_ENV)
    if not mark:
        return
    raise WorkerStartError(
        f"{action} was called inside a sway worker process ({mark}), and a worker never "
        "starts workers: each would start another. The module a custom backend's "
        "entry_point names is imported by its worker, so it must not build a backend "
        "when imported: put the script's driver code (the swayhost.build call and what "
        'uses it) under `if __name__ == "__main__":`.'
    )
