"""The two ways to build an env: uv, or ``venv`` + pip, as command lines.

uv is fast and is used when it is installed, for envs of their own. pip is
always available (the host's own ``pip``, pointed at the env with
``--python``, so envs need no pip of their own) and is the only one of the
two that layers: run inside an env whose ``.pth`` adds the host's
site-packages, pip counts the host's packages as installed and installs only
what differs, where uv would reinstall them all (a torch it cannot find in a
local wheel folder included). So ``inherit`` envs, and specs with
``pip_args``, use pip. uv reads none of pip's configuration, which is why a
spec carries its own ``find_links`` and index URLs.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from swayhost.envs.spec import EnvSpec


class InstallerMissing(Exception):
    """The chosen installer is not available."""

    def __init__(self, problem: str, fix: str) -> None:
        super().__init__(f"{problem}; {fix}")
        self.problem = problem
        self.fix = fix


@dataclass(frozen=True)
class Installer:
    name: str
    """``uv`` or ``pip``."""
    uv: str | None = None
    """The uv executable, for ``uv``."""

    def venv_command(self, base_python: str, target: Path) -> list[str]:
        """Create an empty virtualenv (no pip inside) at ``target``."""
        if self.uv is not None:
            return [self.uv, "venv", "--no-config", "--quiet", "--python", base_python, str(target)]
        return [base_python, "-m", "venv", "--without-pip", str(target)]

    def install_command(
        self, spec: EnvSpec, python: Path, packages: Sequence[str], log: Path
    ) -> list[str]:
        """Install ``packages`` into the env whose interpreter is ``python``."""
        sources = source_args(spec)
        if self.uv is not None:
            head = [self.uv, "pip", "install", "--no-config", "--python", str(python)]
            return [*head, *sources, *packages]
        return [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-input",
            "--disable-pip-version-check",
            "--no-compile",
            "--log",
            str(log),
            *sources,
            *spec.pip_args,
            *packages,
        ]


def source_args(spec: EnvSpec) -> list[str]:
    """Where packages come from; pip and uv spell these options the same way."""
    args: list[str] = []
    for link in spec.find_links:
        args += ["--find-links", link]
    if spec.index_url:
        args += ["--index-url", spec.index_url]
    for url in spec.extra_index_urls:
        args += ["--extra-index-url", url]
    return args


def find_uv() -> str | None:
    """uv beside the host's interpreter (installed in its venv), else on PATH."""
    beside = Path(sys.executable).parent / "uv"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("uv")


def choose(spec: EnvSpec) -> Installer:
    """The installer for ``spec`` (see the module docstring for the rule)."""
    wanted = spec.installer
    if wanted == "auto":
        layered = spec.inherit or bool(spec.pip_args)
        wanted = "uv" if not layered and find_uv() is not None else "pip"
    if wanted == "uv":
        uv = find_uv()
        if uv is None:
            raise InstallerMissing(
                "installer 'uv' was asked for but uv is not installed",
                "run `pip install uv`, or set installer: pip",
            )
        return Installer("uv", uv)
    if importlib.util.find_spec("pip") is None:
        raise InstallerMissing(
            f"the pip installer needs pip in the host's interpreter ({sys.executable})",
            f"run `{sys.executable} -m ensurepip`, or install uv (not for inherit: true envs)",
        )
    return Installer("pip")
