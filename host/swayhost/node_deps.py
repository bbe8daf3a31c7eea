"""Whether a Node worker command can find its npm dependencies, checked before it runs.

A Node worker whose ``node_modules`` were never installed dies at its first
``require`` with a 15-line stack ending ``Cannot find module
'@grpc/grpc-js'``; that says nothing about the fix. This looks, as Node's
resolver would, for each dependency of the script's ``package.json`` and, when
one is missing, says which and how to install it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

NODE_NAMES = ("node", "nodejs")


def missing_dependency(argv: Sequence[str]) -> str | None:
    """A one-line problem and fix when ``argv`` runs a Node script whose deps are missing."""
    if not argv or Path(argv[0]).name not in NODE_NAMES:
        return None
    script = next((Path(a) for a in argv[1:] if a.endswith((".js", ".cjs", ".mjs"))), None)
    if script is None or not script.is_file():
        return None
    package = _package_json(script.resolve().parent)
    if package is None:
        return None
    try:
        dependencies = json.loads(package.read_text(encoding="utf-8")).get("dependencies") or {}
    except (OSError, ValueError, AttributeError):
        return None  # not ours to diagnose: node will say what is wrong with it
    for name in dependencies:
        if not _installed(name, package.parent):
            folder = package.parent
            fix = f"`npm ci` in {folder}"
            if _has_make_target(folder.parent.parent / "Makefile", "node-worker"):
                fix = f"`make node-worker` (or {fix})"
            return (
                f"the Node worker {str(script)!r} cannot start: its dependency {name!r} is not"
                f" installed (no node_modules/{name} under {folder}); run {fix}"
            )
    return None


def _package_json(folder: Path) -> Path | None:
    for candidate in (folder, *folder.parents):
        if (candidate / "package.json").is_file():
            return candidate / "package.json"
    return None


def _installed(name: str, folder: Path) -> bool:
    """Node's lookup: ``node_modules/<name>`` in the folder or any folder above it."""
    return any((f / "node_modules" / name).is_dir() for f in (folder, *folder.parents))


def _has_make_target(makefile: Path, target: str) -> bool:
    """Whether ``makefile`` (this project's, for its own Node worker) defines ``target``."""
    try:
        return f"\n{target}:" in makefile.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
