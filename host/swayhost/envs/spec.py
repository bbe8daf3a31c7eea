"""A provisioned environment as declared, and the hash that names it in the cache.

An ``EnvSpec`` says *what* should be installed (requirements, the worker
package's extras, a Python version, whether to layer on the host's
site-packages, where packages come from). Two specs that would build the
same environment must hash the same, so the hash is taken over a normalized
identity: requirements in canonical form, sorted and deduplicated; the
resolved base interpreter (its real path and full version, since a venv is
tied to it); the inherited site-packages folders; and how this project's
worker package is installed; the variables set for the installer. ``name``,
``origin``, ``installer`` and ``timeout`` say *how* or *for whom* it is
built and are left out.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

FORMAT = 1
"""Bump when the layout of a built env changes, so old ones are not reused."""

INSTALLERS = ("auto", "uv", "pip")
DEFAULT_TIMEOUT = 900.0
"""Seconds for a whole build (venv, install, check); a CPU torch install fits easily."""

_VERSION = re.compile(r"^3\.\d+(\.\d+)?$")


@dataclass(frozen=True)
class EnvSpec:
    """A worker environment that the host creates and caches on first use.

    ``requirements``: PEP 508 strings installed next to the worker package.
    ``extras``: extras of this project's distribution to install with it
    (``("hf",)`` brings torch, transformers, peft).
    ``python``: a version (``"3.11"``) or an interpreter path; default: the
    host's interpreter.
    ``inherit``: layer the env on the host's site-packages (Ray's pip
    runtime_env semantics): the host's packages are importable, and whatever
    the env installs shadows them; only what differs gets installed.
    ``find_links`` / ``index_url`` / ``extra_index_urls``: where packages
    come from, passed to either installer (uv does not read pip's config).
    ``pip_args``: extra arguments for pip (they select the pip installer).
    ``install_env``: environment variables for the installer and the build
    backends it runs, for packages whose build options are variables
    (llama-cpp-python's ``CMAKE_ARGS``). Installers reuse a wheel they built
    earlier from the same source whatever these were, so a new value builds
    a new env but not necessarily a new wheel: clear that package from the
    installer's cache (``uv cache clean NAME``, ``pip cache remove NAME``)
    to rebuild it with other options.
    ``installer``: ``auto`` (uv when installed, pip for inherited envs or
    with ``pip_args``), ``uv`` or ``pip``.
    ``timeout``: seconds for the whole build, and for waiting on another
    process that builds the same env. ``name`` and ``origin`` (where it was
    declared) only label error messages and listings.
    """

    requirements: tuple[str, ...] = ()
    extras: tuple[str, ...] = ()
    python: str | None = None
    inherit: bool = False
    find_links: tuple[str, ...] = ()
    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    pip_args: tuple[str, ...] = ()
    install_env: Mapping[str, str] = field(default_factory=dict)
    installer: str = "auto"
    timeout: float = DEFAULT_TIMEOUT
    name: str = "env"
    origin: str = ""

    def __post_init__(self) -> None:
        normalized = sorted({normalize_requirement(r) for r in self.requirements})
        object.__setattr__(self, "requirements", tuple(normalized))
        extras = sorted({canonicalize_name(e) for e in self.extras})
        object.__setattr__(self, "extras", tuple(extras))
        bad = [name for name in self.install_env if not name or "=" in name]
        if bad:
            raise ValueError(f"install_env has an invalid variable name {bad[0]!r}")
        object.__setattr__(self, "install_env", dict(sorted(self.install_env.items())))
        if self.python is not None and "/" not in self.python and not _VERSION.match(self.python):
            raise ValueError(
                f"python {self.python!r} is neither a version like '3.11' nor an interpreter path"
            )
        if self.installer not in INSTALLERS:
            raise ValueError(f"installer {self.installer!r} is not one of {', '.join(INSTALLERS)}")
        if self.installer == "uv" and self.inherit:
            raise ValueError(
                "inherit: true needs the pip installer: only pip counts the host's packages "
                "as installed, uv would reinstall them (torch included) into the env"
            )
        if self.installer == "uv" and self.pip_args:
            raise ValueError("pip_args are pip's arguments; drop them or use installer: pip")
        if self.timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {self.timeout!r}")

    def requirement_names(self) -> list[str]:
        """Canonical names of the requirements (for reporting installed versions)."""
        return [canonicalize_name(Requirement(r).name) for r in self.requirements]


def normalize_requirement(text: str) -> str:
    """``text`` in canonical PEP 508 form; ``ValueError`` when it is not one."""
    try:
        requirement = Requirement(text.strip())
    except InvalidRequirement as exc:
        raise ValueError(f"{text!r} is not a valid requirement ({exc})") from exc
    requirement.name = canonicalize_name(requirement.name)
    return str(requirement)


def identity(
    spec: EnvSpec,
    *,
    python_path: str,
    python_version: str,
    inherited: tuple[str, ...],
    worker_package: list[str],
) -> dict[str, Any]:
    """Everything that decides what the built env contains, in a hashable form.

    ``install_env`` counts only when set, so the envs declared before it
    existed keep their hash and their cached build.
    """
    optional = {"install_env": dict(spec.install_env)} if spec.install_env else {}
    return {
        "format": FORMAT,
        "python": {"path": python_path, "version": python_version},
        "inherit": list(inherited),
        "requirements": list(spec.requirements),
        "worker_package": worker_package,
        "find_links": list(spec.find_links),
        "index_url": spec.index_url or "",
        "extra_index_urls": list(spec.extra_index_urls),
        "pip_args": list(spec.pip_args),
        **optional,
    }


def digest(identity: dict[str, Any]) -> str:
    """The env's cache key: 16 hex digits of the identity's SHA-256."""
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
