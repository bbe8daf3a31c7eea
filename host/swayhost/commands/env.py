"""``swayhost env list | create | gc``: the provisioned worker environments.

``list`` reads the cache only; ``create`` builds the envs the host config
declares (a cached one is a hit and costs no install); ``gc`` removes envs
unused for a while, envs the config no longer declares, or all of them.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from datetime import UTC, datetime
from typing import Any

from swayhost import config, envs
from swayhost.console import print_table, table
from swayhost.exitcodes import EXIT_FAILED, EXIT_OK
from swayhost.spec import KINDS

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def register(sub: Any) -> None:
    parser: argparse.ArgumentParser = sub.add_parser(
        "env", help="list, create and garbage-collect provisioned worker environments"
    )
    actions = parser.add_subparsers(dest="env_command", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="every cached env: spec, versions, size, last use")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=run_list)

    create = actions.add_parser(
        "create", help="build the envs the host config declares (a cached env is a hit)"
    )
    create.add_argument(
        "--kind", action="append", choices=KINDS, help="only this worker kind (repeatable)"
    )
    create.add_argument("--json", action="store_true", help="print JSON")
    create.set_defaults(func=run_create)

    gc = actions.add_parser("gc", help="remove envs unused for a while (or all of them)")
    gc.add_argument(
        "--older-than",
        type=duration,
        default=duration("30d"),
        metavar="AGE",
        help="remove envs unused for longer than AGE, e.g. 30d, 12h, 0s (default 30d)",
    )
    gc.add_argument(
        "--unreferenced",
        action="store_true",
        help="also remove envs that no worker section of the host config declares",
    )
    gc.add_argument("--all", action="store_true", help="remove every env, used or not")
    gc.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    gc.add_argument("--json", action="store_true", help="print JSON")
    gc.set_defaults(func=run_gc)


def duration(text: str) -> float:
    """``30d`` / ``12h`` / ``90m`` / ``45s`` / ``2w`` (a bare number is seconds) in seconds."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhdw]?)", text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not an age like 30d, 12h or 0s")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


# -- list ----------------------------------------------------------------------


def run_list(args: argparse.Namespace) -> int:
    rows = [_describe(env) for env in envs.cached_envs()]
    if args.json:
        print(json.dumps(rows, indent=2, sort_keys=True))
        return EXIT_OK
    if not rows:
        print(f"no envs under {envs.envs_root()}")
        return EXIT_OK
    listing = table(f"envs under {envs.envs_root()}", "hash", "name", "state", "spec", "versions")
    for row in rows:
        listing.add_row(
            row["digest"],
            row["name"],
            f"{row['state']}\n{_size(row['size_bytes'])}, used {_ago(row['last_used'])}",
            _spec_text(row["spec"]),
            "\n".join(f"{k} {v}" for k, v in sorted(row["versions"].items())),
        )
    print_table(listing)
    return EXIT_OK


def _describe(env: envs.CachedEnv) -> dict[str, Any]:
    meta = env.meta()
    return {
        "digest": env.digest,
        "path": str(env.path),
        "python": str(env.python),
        "state": "complete" if meta else "unfinished",
        "name": meta.get("name", ""),
        "origin": meta.get("origin", ""),
        "spec": meta.get("spec", {}),
        "installer": meta.get("installer", ""),
        "versions": meta.get("versions", {}),
        "python_version": meta.get("identity", {}).get("python", {}).get("version", ""),
        "build_seconds": meta.get("build_seconds"),
        "size_bytes": env.size(),
        "last_used": _iso(env.last_used()),
    }


def _spec_text(spec: dict[str, Any]) -> str:
    parts = [*spec.get("requirements", [])]
    parts += [f"extras: {','.join(spec['extras'])}"] if spec.get("extras") else []
    parts += [f"python {spec['python']}"] if spec.get("python") else []
    parts += ["inherits the host"] if spec.get("inherit") else []
    return "\n".join(parts) or "(worker package only)"


# -- create --------------------------------------------------------------------


def run_create(args: argparse.Namespace) -> int:
    declared = {
        kind: options.environment
        for kind in args.kind or config.configured_kinds()
        if (options := config.worker_options(kind)).environment is not None
    }
    missing = [kind for kind in args.kind or () if kind not in declared]
    if missing or not declared:
        path = config.default_config_path()
        if not path.exists():
            problem = (
                f"there is no host config file ({path} does not exist); create it with a worker"
                f" section that declares `environment:`, or point {config.CONFIG_ENV} at one"
            )
        elif missing:
            problem = f"workers.{missing[0]} of {path} declares no `environment:`; add one"
        else:
            problem = f"no worker section of {path} declares an `environment:`; add one"
        print(f"error: {problem} (README: Worker environments)", file=sys.stderr)
        return EXIT_FAILED
    rows = []
    for kind, spec in declared.items():
        done = envs.provision(spec)
        rows.append(
            {
                "kind": kind,
                "name": spec.name,
                "digest": done.env.digest,
                "python": str(done.python),
                "built": done.built,
                "seconds": round(done.seconds, 3),
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2, sort_keys=True))
        return EXIT_OK
    created = table("worker envs", "kind", "hash", "result", "interpreter")
    for row in rows:
        result = f"{'built' if row['built'] else 'cache hit'} in {row['seconds']:.2f}s"
        created.add_row(str(row["kind"]), str(row["digest"]), result, str(row["python"]))
    print_table(created)
    return EXIT_OK


# -- gc ------------------------------------------------------------------------


def run_gc(args: argparse.Namespace) -> int:
    keep = _declared_digests() if args.unreferenced else None
    picked = envs.collect(
        older_than=args.older_than, keep=keep, everything=args.all, dry_run=args.dry_run
    )
    freed = sum(p.size for p in picked if p.removed)
    if args.json:
        report = {
            "dry_run": args.dry_run,
            "freed_bytes": freed,
            "envs": [
                {"digest": p.env.digest, "why": p.why, "size_bytes": p.size, "removed": p.removed}
                for p in picked
            ],
        }
        print(json.dumps(report, indent=2, sort_keys=True))
        return EXIT_OK
    for p in picked:
        state = "would remove" if args.dry_run else ("removed" if p.removed else "kept")
        print(f"{state} {p.env.digest} ({p.why}, {_size(p.size)})")
    if args.dry_run:
        print(f"would free {_size(sum(p.size for p in picked))}")
    else:
        print(f"freed {_size(freed)}")
    return EXIT_OK


def _declared_digests() -> set[str]:
    """Hashes of the envs the host config declares now (resolving them builds nothing)."""
    digests = set()
    for kind in config.configured_kinds():
        spec = config.worker_options(kind).environment
        if spec is not None:
            digests.add(envs.resolve(spec).digest)
    return digests


# -- output --------------------------------------------------------------------


def _size(size: int) -> str:
    value, units = float(size), ["B", "KiB", "MiB", "GiB"]
    while value >= 1024 and len(units) > 1:
        value /= 1024
        units.pop(0)
    return f"{value:.1f} {units[0]}"


def _iso(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).isoformat(timespec="seconds")


def _ago(iso: str) -> str:
    seconds = time.time() - datetime.fromisoformat(iso).timestamp()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit} ago"
    return "just now"
