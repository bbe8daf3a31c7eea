"""The host's config file: how each kind of worker is started on this machine.

sway builds a custom backend from its ``entry_point`` alone
(``swayhost.sway:HF``), so ``sway.yaml`` has no place for the interpreter or
environment of the worker; this file says it, once per machine::

    workers:
      hf:
        python: /envs/hf/bin/python   # interpreter that runs the hf worker
        env: {HF_HOME: /data/hf}      # extra environment for the worker
        startup_timeout: 120          # seconds for start-up and model load

The file is ``$SWAYHOST_CONFIG`` when set, else
``$XDG_CONFIG_HOME/swayhost/config.yaml`` (``~/.config/...``). A missing
default file means defaults (the worker runs under the current interpreter);
a file named explicitly (the variable or ``config_path``) must exist, so a
typo in its path cannot silently fall back. Every validation error names the
file, the key and the fix. A worker section is checked when that kind of worker
is asked for, so a machine without an MLX environment can still run hf workers.
"""

from __future__ import annotations

import difflib
import os
import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from swayhost.errors import ConfigError
from swayhost.spec import KINDS, WorkerOptions

CONFIG_ENV = "SWAYHOST_CONFIG"
EXAMPLE = "workers: {hf: {python: /envs/hf/bin/python, env: {HF_HOME: /data/hf}}}"


def default_config_path() -> Path:
    """``$SWAYHOST_CONFIG``, else ``$XDG_CONFIG_HOME/swayhost/config.yaml``."""
    explicit = os.environ.get(CONFIG_ENV)
    if explicit:
        return Path(explicit).expanduser()
    config_home = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home).expanduser() / "swayhost" / "config.yaml"


def worker_options(kind: str, config_path: Path | None = None) -> WorkerOptions:
    """How to start a ``kind`` worker: its config section, or defaults when there is none."""
    if kind not in KINDS:
        raise ValueError(f"unknown worker kind {kind!r}; expected one of {', '.join(KINDS)}")
    required = config_path is not None or bool(os.environ.get(CONFIG_ENV))
    path = config_path if config_path is not None else default_config_path()
    section = _load_workers(path, required=required).get(kind)
    if section is None:
        return WorkerOptions()
    return _parse_worker(path, f"workers.{kind}", section)


def _load_workers(path: Path, *, required: bool) -> Mapping[str, Any]:
    """The ``workers`` mapping of the file, checked down to its kinds."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if required:
            raise _error(
                path, "(file)", "not found", f"create it, or point {CONFIG_ENV} at one"
            ) from None
        return {}
    except OSError as exc:
        raise _error(path, "(file)", f"cannot be read ({exc})", "fix its permissions") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise _error(path, "(file)", f"is not valid YAML ({exc})", f"write e.g. {EXAMPLE}") from exc
    top = _mapping(path, "(top level)", data)
    _check_keys(path, "", top, ("workers",))
    workers = _mapping(path, "workers", top.get("workers"))
    _check_keys(path, "workers.", workers, KINDS)
    return workers


def _parse_worker(path: Path, key: str, section: Any) -> WorkerOptions:
    values = _mapping(path, key, section)
    _check_keys(path, f"{key}.", values, _PARSERS)
    parsed = {name: _PARSERS[name](path, f"{key}.{name}", value) for name, value in values.items()}
    return WorkerOptions(**parsed)


def _python(path: Path, key: str, value: Any) -> str:
    """An executable interpreter; relative paths are relative to the config file.

    The path is kept as written (not resolved): a venv's ``bin/python`` is a
    symlink, and resolving it would lose the venv.
    """
    if not isinstance(value, str) or not value.strip():
        raise _error(
            path, key, f"expected a path, got {value!r}", "write e.g. python: /env/bin/python"
        )
    candidate = Path(value).expanduser()
    if not candidate.is_absolute() and "/" in value:
        candidate = path.parent / candidate
    found = shutil.which(str(candidate))
    if found is None:
        problem = "is not an executable file" if candidate.exists() else "does not exist"
        raise _error(
            path,
            key,
            f"{str(candidate)!r} {problem}",
            "point it at the worker environment's interpreter (e.g. /envs/hf/bin/python), "
            "or remove the key to use the current one",
        )
    return found


def _env(path: Path, key: str, value: Any) -> dict[str, str]:
    """Extra variables; integers are accepted and passed as strings."""
    env = _mapping(path, key, value)
    for name, item in env.items():
        if not isinstance(item, str | int) or isinstance(item, bool):
            raise _error(
                path, f"{key}.{name}", f"expected a string, got {item!r}", "quote the value"
            )
    return {str(name): str(item) for name, item in env.items()}


def _timeout(path: Path, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise _error(
            path, key, f"expected a positive number of seconds, got {value!r}", "write e.g. 120"
        )
    return float(value)


_PARSERS: dict[str, Callable[[Path, str, Any], Any]] = {
    "python": _python,
    "env": _env,
    "startup_timeout": _timeout,
}
"""The keys of a worker section, each with its parser (named as in ``WorkerOptions``)."""


def _mapping(path: Path, key: str, value: Any) -> Mapping[str, Any]:
    """``value`` as a mapping; an empty YAML value (``hf:``) is an empty one."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _error(
            path, key, f"expected a mapping, got {type(value).__name__}", f"write e.g. {EXAMPLE}"
        )
    return value


def _check_keys(path: Path, prefix: str, values: Mapping[Any, Any], allowed: Iterable[str]) -> None:
    known = sorted(allowed)
    for name in values:
        if name not in known:
            close = difflib.get_close_matches(str(name), known, n=1)
            guess = f"did you mean {close[0]!r}? " if close else ""
            raise _error(
                path, f"{prefix}{name}", "unknown key", f"{guess}allowed: {', '.join(known)}"
            )


def _error(path: Path, key: str, problem: str, fix: str) -> ConfigError:
    return ConfigError(f"{path}: {key}: {problem}; {fix}")
