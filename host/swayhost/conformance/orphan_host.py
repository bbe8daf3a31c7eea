"""A throwaway host for the parent-death check: ``python -m swayhost.conformance.orphan_host``.

The kit cannot test "the worker dies with its host" on itself, so it starts
this small host process, which spawns the worker through the ordinary host
machinery, prints ``{"pid", "network", "address"}`` as JSON on stdout and then waits.
The kit SIGKILLs it (no cleanup code runs) and watches the orphaned worker.
Should the kit itself die first, this process sees its stdin close and stops
the worker normally, so nothing is left behind either way.

The one argument is JSON: ``{"kind", "argv", "env", "cwd", "startup_timeout"}``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from swayhost.connection import WorkerConnection
from swayhost.errors import SwayHostError
from swayhost.local import worker_process
from swayhost.spec import ModelSpec, WorkerOptions


def payload_for(spec: ModelSpec) -> str:
    """The argument that makes this helper start ``spec``'s worker."""
    options = spec.worker
    return json.dumps(
        {
            "kind": spec.kind,
            "argv": options.argv(spec.kind),
            "env": dict(options.env),
            "cwd": options.cwd,
            "startup_timeout": options.startup_timeout,
        }
    )


def main(argv: list[str]) -> int:
    payload: dict[str, Any] = json.loads(argv[0])
    options = WorkerOptions(
        command=tuple(payload["argv"]),
        env=payload["env"],
        cwd=payload["cwd"],
        startup_timeout=float(payload["startup_timeout"]),
        name="orphan",
    )
    spec = ModelSpec(base="", kind=payload["kind"], worker=options)
    connection = WorkerConnection(worker_process(spec))
    try:
        connection.start()
    except SwayHostError as exc:
        print(json.dumps({"error": str(exc)}), flush=True)
        return 1
    handshake = connection.endpoint.handshake
    assert handshake is not None
    started = {"pid": connection.endpoint.pid, "network": handshake.network}
    print(json.dumps({**started, "address": handshake.address}), flush=True)
    sys.stdin.read()  # until the kit goes away; normally it SIGKILLs us first
    connection.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
