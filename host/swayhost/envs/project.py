"""How this project's worker package gets into a provisioned env.

A worker runs ``python -m swayworker.<kind>``, so every env needs
``swayworker``, the generated ``swayplugin`` stubs and the project's light
dependencies (grpcio, grpcio-health-checking, protobuf, numpy, ...). Those
dependencies (and those of any requested extras) are installed in the same
installer call as the env's requirements, so one resolver sees every
constraint.

The code itself: when the host runs from a source checkout, the env gets a
``.pth`` file naming the checkout's ``workers/`` folder. That is exactly
what an editable install amounts to, and the env always runs the host's
current worker code, but it costs no build: ``pip install -e`` would run
setuptools in an isolated build env for every new env (about ten seconds
here). Outside a checkout, the env installs the released distribution at the
version the host runs.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import swayworker

DISTRIBUTION = "sway-plugin-host"


@dataclass(frozen=True)
class WorkerPackage:
    """What an env needs for the worker package: requirements, and a source folder or none."""

    requirements: tuple[str, ...]
    source: Path | None
    """The checkout folder holding ``swayworker`` and ``swayplugin``, put on the env's path."""

    def identity(self) -> list[str]:
        """The parts that decide what the env holds (for its hash)."""
        return [*self.requirements, *([f"source={self.source}"] if self.source else [])]


def worker_package(extras: tuple[str, ...]) -> WorkerPackage:
    """The worker package, with ``extras`` of this distribution (e.g. ``hf``)."""
    project = _checkout_project()
    if project is None:
        suffix = f"[{','.join(extras)}]" if extras else ""
        return WorkerPackage((f"{DISTRIBUTION}{suffix}=={metadata.version(DISTRIBUTION)}",), None)
    table: dict[str, Any] = project["project"]
    optional: dict[str, list[str]] = table.get("optional-dependencies", {})
    unknown = [e for e in extras if e not in optional]
    if unknown:
        raise ValueError(
            f"unknown extra {unknown[0]!r} of {DISTRIBUTION}; known: {', '.join(sorted(optional))}"
        )
    requirements = [*table.get("dependencies", []), *(r for e in extras for r in optional[e])]
    return WorkerPackage(tuple(requirements), Path(swayworker.__file__).resolve().parents[1])


def _checkout_project() -> dict[str, Any] | None:
    """This project's ``pyproject.toml`` when ``swayworker`` is imported from a checkout."""
    root = Path(swayworker.__file__).resolve().parents[2]
    try:
        project = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return None
    return project if project.get("project", {}).get("name") == DISTRIBUTION else None
