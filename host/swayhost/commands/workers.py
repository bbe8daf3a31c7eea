"""``swayhost workers``: each configured worker's env, interpreter, versions, capabilities.

Each worker is started briefly and asked to Describe itself, without a
Load: a worker reports the framework versions installed in its env (from
package metadata, nothing imported) and its runtime before any model is
loaded, so no model is needed. Capabilities belong to a loaded backend, so
they are shown only when ``--base`` (and ``--adapter``) name a model that
each worker then Loads. A provisioned env that is not built yet is reported,
not built: ``swayhost env create`` builds it. The kinds are those of the
host config's worker sections, else every built-in kind.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict

from swayhost import config, envs
from swayhost.connection import WorkerConnection
from swayhost.console import print_table, table
from swayhost.errors import SwayHostError
from swayhost.exitcodes import EXIT_FAILED, EXIT_OK
from swayhost.local import worker_process
from swayhost.spec import KINDS, ModelSpec, WorkerOptions


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "workers", help="each configured worker: env, interpreter, versions, capabilities"
    )
    parser.add_argument(
        "--kind", action="append", choices=KINDS, help="only this worker kind (repeatable)"
    )
    parser.add_argument("--base", help="a model each worker Loads, to show its capabilities")
    parser.add_argument("--adapter", type=Path, help="the adapter to Load with --base")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    kinds = args.kind or config.configured_kinds() or [k for k in KINDS if k != "custom"]
    rows = [_inspect(kind, args.base, args.adapter) for kind in kinds]
    if args.json:
        print(json.dumps(rows, indent=2, sort_keys=True))
    else:
        _render(rows)
    return EXIT_OK if all(row["state"] == "ok" for row in rows) else EXIT_FAILED


def _inspect(kind: str, base: str | None, adapter: Path | None) -> dict[str, Any]:
    """One row: where the worker runs and, once started, what it says about itself."""
    row: dict[str, Any] = {"kind": kind, "python": None, "env": None, "state": "ok", "error": ""}
    try:
        options = config.worker_options(kind)
        row["python"] = options.python
        row["env"] = _env_row(options)
        if row["env"] is not None and not row["env"]["built"]:
            row["state"] = "not built"
            row["error"] = f"run `swayhost env create --kind {kind}` first"
            return row
        row.update(_describe(kind, _runnable(options, row["env"]), base, adapter))
    except SwayHostError as exc:
        row["state"] = "error"
        row["error"] = str(exc)
    return row


def _env_row(options: WorkerOptions) -> dict[str, Any] | None:
    if options.environment is None:
        return None
    resolved = envs.resolve(options.environment)
    env = envs.CachedEnv(envs.envs_root() / resolved.digest)
    return {
        "name": options.environment.name,
        "digest": resolved.digest,
        "built": env.complete(),
        "python": str(env.python),
    }


def _runnable(options: WorkerOptions, env: dict[str, Any] | None) -> WorkerOptions:
    """The options with a built env's interpreter in place of its declaration."""
    return options if env is None else replace(options, python=env["python"], environment=None)


def _describe(
    kind: str, options: WorkerOptions, base: str | None, adapter: Path | None
) -> dict[str, Any]:
    spec = ModelSpec(kind=kind, base=base or "", adapter=adapter, worker=options)
    connection = WorkerConnection(worker_process(spec))
    try:
        described = connection.start()
        if base is not None:
            described = connection.load(spec.to_proto(), options.startup_timeout)
    finally:
        connection.close()
    facts = MessageToDict(described, preserving_proto_field_name=True)
    return {
        "interpreter": described.runtime.executable,
        "runtime": described.runtime.runtime,
        "framework_versions": dict(described.framework_versions),
        "loaded": described.model.loaded,
        "protocols": list(described.capabilities.protocols),
        "capabilities": facts.get("capabilities", {}),
    }


def _render(rows: list[dict[str, Any]]) -> None:
    rows_table = table("workers", "kind", "env", "interpreter", "versions", "capabilities")
    for row in rows:
        env = row["env"]
        where = f"python: {row['python']}" if row["python"] else "current interpreter"
        where = where if env is None else f"environment {env['name']} [{env['digest']}]"
        if row["state"] != "ok":
            rows_table.add_row(row["kind"], where, f"{row['state']}: {row['error']}", "", "")
            continue
        versions = "\n".join(f"{k} {v}" for k, v in sorted(row["framework_versions"].items()))
        shown = ", ".join(row["protocols"]) if row["loaded"] else "(after Load: pass --base)"
        runtime = f"{row['runtime']}\n{row['interpreter']}"
        rows_table.add_row(row["kind"], where, runtime, versions, shown)
    print_table(rows_table)
