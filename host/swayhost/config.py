"""The host's config file: how each kind of worker is started on this machine.

sway builds a custom backend from its ``entry_point`` alone
(``swayhost.sway:HF``), so ``sway.yaml`` has no place for the interpreter or
environment of the worker; this file says it, once per machine::

    workers:
      hf:
        python: /envs/hf/bin/python   # interpreter (or venv folder) that runs the hf worker
        env: {HF_HOME: /data/hf}      # extra environment variables for the worker
        startup_timeout: 120          # seconds for start-up and model load
        cache_bytes: 256MiB           # result cache bound: bytes, or a size (0 turns it off)
        dynamic_batching: true        # batch concurrent calls (false: every call on its own)
        batch_window_s: 0.002         # how long a batch waits for callers to join (at most 0.1)
        journal: runs/hf.sqlite       # keep every result, a rerun resumes (relative to this file)
        recovery: {max_restarts: 20, standby: true}   # swayhost.RecoveryPolicy fields, or: never
        detach: false                 # true: the worker outlives sway and is reattached by name
        name: hf-eval                 # the worker's name (logs, stats, detached record)
      mlx:
        launcher: ray                 # place it in a Ray actor (default: local)
        ray: {num_gpus: 1, runtime_env: {pip: [mlx-lm]}}   # swayhost.RayOptions fields
        options: {adapter_cache_dir: /data/mlx-adapters}   # passed to the worker's Load
      custom:
        environment:                  # or: an env the host provisions, once, cached
          requirements: [transformers==4.57.6]
          inherit: true               # layer on the host's site-packages

``environment`` keys (see ``swayhost.envs.EnvSpec``): ``requirements``,
``extras``, ``python`` (a version or a path), ``inherit``, ``find_links``,
``index_url``, ``extra_index_urls``, ``pip_args``, ``install_env``, ``installer``,
``timeout``.

``cache_bytes`` is a whole number of bytes or a size: a number and a unit,
decimal (``B``, ``KB``, ``MB``, ``GB``, ``TB``) or binary (``KiB``, ``MiB``,
``GiB``, ``TiB``), case-insensitive, e.g. ``256MiB`` or ``1.5GB``. ``recovery``
takes the fields of ``swayhost.RecoveryPolicy`` (any subset; the rest keep
their defaults), or ``never`` for ``RecoveryPolicy.never()``. ``options``
values are passed as strings: a number or boolean as Python writes it
(``2``, ``0.5``, ``True``); quote one to pass it exactly.

The file is ``$SWAYHOST_CONFIG`` when set, else
``$XDG_CONFIG_HOME/swayhost/config.yaml`` (``~/.config/...``). A missing
default file means defaults (the worker runs under the current interpreter);
a file named explicitly (the variable or ``config_path``) must exist, so a
typo in its path cannot silently fall back. Every validation error names the
file, the key and the fix. A worker section is checked when that kind of worker
is asked for, so a machine without an MLX environment can still run hf workers.
A ``python`` interpreter is run once when its section is read, so a path
that is no Python (or lacks the worker package) is reported here, with the
fix, before any worker starts.

The schema is written by hand rather than as pydantic models: every message
(file, key, problem, fix, did-you-mean) is part of the interface and tested
word for word, and pydantic's errors would need a translation layer about as
long as the parsers; the host does not depend on pydantic (it comes only with
dlm-sway, which a worker environment may lack). The rules themselves live
with the options types (``WorkerOptions``, ``RecoveryPolicy``, ``RayOptions``
validate themselves; ``OptionsConflict`` and ``is_batch_window`` are shared),
so this module only reads the file and says where a value came from.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import shutil
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import yaml

from swayhost.detached import check_name
from swayhost.envs import pythons
from swayhost.envs.spec import INSTALLERS, EnvSpec, normalize_requirement
from swayhost.errors import ConfigError
from swayhost.policy import RecoveryPolicy
from swayhost.ray.options import RayOptions
from swayhost.spec import (
    KINDS,
    LAUNCHERS,
    MAX_BATCH_WINDOW_S,
    OptionsConflict,
    WorkerOptions,
    is_batch_window,
)

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


def configured_kinds(config_path: Path | None = None) -> list[str]:
    """The worker kinds the config file has a section for, in the file's order."""
    required = config_path is not None or bool(os.environ.get(CONFIG_ENV))
    path = config_path if config_path is not None else default_config_path()
    return list(_load_workers(path, required=required))


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
    except UnicodeDecodeError as exc:
        raise _error(
            path,
            "(file)",
            f"is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})",
            f"point {CONFIG_ENV} at the YAML config file, e.g. {EXAMPLE}",
        ) from None
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
    if "python" in values and "environment" in values:
        raise _error(
            path,
            key,
            "has both python and environment",
            "keep one: an existing interpreter (python) or one the host provisions (environment)",
        )
    parsed = {name: _PARSERS[name](path, f"{key}.{name}", value) for name, value in values.items()}
    if parsed.get("launcher") == "ray" and ("python" in values or "environment" in values):
        raise _error(
            path,
            key,
            "has launcher: ray with python or environment",
            "a Ray-placed worker runs in Ray's runtime_env: declare it under ray.runtime_env",
        )
    try:
        options = WorkerOptions(**parsed)
    except OptionsConflict as exc:
        raise _error(path, key, f"has {exc.keys}", exc.fix) from None
    except ValueError as exc:
        raise _error(path, key, str(exc), "see the worker keys in the README") from None
    if options.python is not None:
        _check_interpreter(path, f"{key}.python", options)
    return options


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
    try:
        candidate = pythons.executable_in(candidate)
    except pythons.InterpreterError as exc:
        raise _error(
            path, key, str(exc), "point it at a virtualenv folder or an interpreter"
        ) from None
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


def _check_interpreter(path: Path, key: str, options: WorkerOptions) -> None:
    """Run the interpreter once: it must be a Python that can import ``swayworker``."""
    assert options.python is not None
    try:
        interpreter = pythons.probe(options.python, env=options.env)
    except pythons.InterpreterError as exc:
        raise _error(
            path, key, str(exc), "point it at a Python 3.11+ interpreter or virtualenv folder"
        ) from None
    if not interpreter.has_worker:
        raise _error(
            path,
            key,
            f"{options.python!r} (Python {interpreter.version}) cannot import swayworker",
            "install this project there (pip install sway-plugin-host), or declare "
            "`environment:` instead to let the host provision one",
        )


def _environment(path: Path, key: str, value: Any) -> EnvSpec:
    """A provisioned env; relative ``find_links`` folders are relative to the config file."""
    values = _mapping(path, key, value)
    _check_keys(path, f"{key}.", values, _ENV_PARSERS)
    parsed = {
        name: _ENV_PARSERS[name](path, f"{key}.{name}", item) for name, item in values.items()
    }
    if "find_links" in parsed:
        parsed["find_links"] = tuple(_local_or_url(path, link) for link in parsed["find_links"])
    try:
        return EnvSpec(**parsed, name=key.split(".")[1], origin=f"{path}: {key}")
    except ValueError as exc:
        raise _error(path, key, str(exc), "see the environment keys in the README") from None


def _strings(path: Path, key: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise _error(path, key, f"expected a list of strings, got {value!r}", "write e.g. [a, b]")
    return tuple(v.strip() for v in value)


def _requirements(path: Path, key: str, value: Any) -> tuple[str, ...]:
    items = _strings(path, key, value)
    for index, item in enumerate(items):
        try:
            normalize_requirement(item)
        except ValueError as exc:
            raise _error(
                path, f"{key}[{index}]", str(exc), "write e.g. transformers==4.57.6"
            ) from None
    return items


def _python_request(path: Path, key: str, value: Any) -> str:
    """A version (quoted: YAML reads 3.10 as the number 3.1) or an interpreter path."""
    if isinstance(value, float | int) and not isinstance(value, bool):
        raise _error(path, key, f"{value!r} is a number", f"quote it: python: '{value}'")
    if not isinstance(value, str) or not value.strip():
        raise _error(path, key, f"expected a version or a path, got {value!r}", "e.g. '3.11'")
    text = value.strip()
    if "/" in text and not Path(text).expanduser().is_absolute():
        return str(path.parent / text)
    return text


def _flag(path: Path, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _error(path, key, f"expected true or false, got {value!r}", "write true or false")
    return value


def _text(path: Path, key: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _error(path, key, f"expected a string, got {value!r}", "quote the value")
    return value.strip()


def _installer(path: Path, key: str, value: Any) -> str:
    if value not in INSTALLERS:
        raise _error(
            path, key, f"unknown installer {value!r}", f"use one of {', '.join(INSTALLERS)}"
        )
    return str(value)


def _local_or_url(path: Path, link: str) -> str:
    """A find-links entry: a URL as is, a local path made absolute (relative to the file)."""
    if "://" in link:
        return link
    candidate = Path(link).expanduser()
    return str(candidate if candidate.is_absolute() else path.parent / candidate)


def _env(path: Path, key: str, value: Any) -> dict[str, str]:
    """Extra variables; integers are accepted and passed as strings."""
    env = _mapping(path, key, value)
    for name, item in env.items():
        if not isinstance(item, str | int) or isinstance(item, bool):
            raise _error(
                path, f"{key}.{name}", f"expected a string, got {item!r}", "quote the value"
            )
    return {str(name): str(item) for name, item in env.items()}


def _launcher(path: Path, key: str, value: Any) -> str:
    if value not in LAUNCHERS:
        raise _error(path, key, f"unknown launcher {value!r}", f"use one of {', '.join(LAUNCHERS)}")
    return str(value)


def _ray(path: Path, key: str, value: Any) -> RayOptions:
    """Where Ray places the worker; ``runtime_env`` is Ray's own and passed as written."""
    values = _mapping(path, key, value)
    _check_keys(path, f"{key}.", values, (f.name for f in dataclasses.fields(RayOptions)))
    parsed: dict[str, Any] = {}
    for name in ("num_cpus", "num_gpus"):
        if name in values:
            parsed[name] = _amount(path, f"{key}.{name}", values[name])
    if "resources" in values:
        resources = _mapping(path, f"{key}.resources", values["resources"])
        parsed["resources"] = {
            str(k): _amount(path, f"{key}.resources.{k}", v) for k, v in resources.items()
        }
    if "runtime_env" in values:
        parsed["runtime_env"] = dict(_mapping(path, f"{key}.runtime_env", values["runtime_env"]))
    if "address" in values:
        parsed["address"] = _text(path, f"{key}.address", values["address"])
    if "tls" in values:
        parsed["tls"] = _flag(path, f"{key}.tls", values["tls"])
    return RayOptions(**parsed)


def _amount(path: Path, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise _error(path, key, f"expected a number >= 0, got {value!r}", "write e.g. 1 or 0.5")
    return float(value)


def _timeout(path: Path, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise _error(
            path, key, f"expected a positive number of seconds, got {value!r}", "write e.g. 120"
        )
    return float(value)


_SIZE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([a-z]*)")
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    **{f"{p}b": 1000**n for n, p in enumerate("kmgt", start=1)},
    **{f"{p}ib": 1024**n for n, p in enumerate("kmgt", start=1)},
}
"""Units of a ``cache_bytes`` size, lower-cased: decimal (``MB``) and binary (``MiB``)."""


def _size(path: Path, key: str, value: Any) -> int:
    """Bytes: a whole number >= 0, or a size such as ``256MiB`` or ``1.5GB``."""
    fix = "write a number of bytes or a size, e.g. 256MiB or 1GB (0 turns the cache off)"
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if not isinstance(value, str):
        raise _error(path, key, f"expected a number of bytes >= 0, got {value!r}", fix)
    match = _SIZE.fullmatch(value.strip().lower())
    if match is None or match.group(2) not in _SIZE_UNITS:
        units = "B, KB, MB, GB, TB, KiB, MiB, GiB, TiB"
        raise _error(path, key, f"{value!r} is not a size", f"{fix}; units: {units}")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])


def _batch_window(path: Path, key: str, value: Any) -> float:
    if not is_batch_window(value):
        raise _error(
            path,
            key,
            f"expected seconds within [0, {MAX_BATCH_WINDOW_S:g}], got {value!r}",
            "write e.g. 0.002 (or dynamic_batching: false to turn batching off)",
        )
    return float(value)


def _journal(path: Path, key: str, value: Any) -> Path:
    """The journal's file; a relative path is relative to the config file.

    Its folder must exist (the journal creates the file, not folders); an
    existing file is checked when the worker starts (``swayhost.journal``).
    """
    if not isinstance(value, str) or not value.strip():
        raise _error(
            path, key, f"expected a path, got {value!r}", "write e.g. journal: runs/hf.sqlite"
        )
    candidate = Path(value.strip()).expanduser()
    if not candidate.is_absolute():
        candidate = path.parent / candidate
    candidate = candidate.resolve()
    if candidate.is_dir():
        raise _error(
            path, key, f"{str(candidate)!r} is a folder", "name a file in it, e.g. run.sqlite"
        )
    if not candidate.parent.is_dir():
        raise _error(
            path,
            key,
            f"the folder of {str(candidate)!r} does not exist",
            f"create {str(candidate.parent)!r}, or point the journal elsewhere",
        )
    return candidate


def _options(path: Path, key: str, value: Any) -> dict[str, str]:
    """Worker options for its Load: numbers and booleans become strings (``str``)."""
    options = _mapping(path, key, value)
    for name, item in options.items():
        if not isinstance(item, str | int | float):
            raise _error(
                path,
                f"{key}.{name}",
                f"expected a string, got {item!r}",
                "quote the value (a JSON value too: '{\"a\": 1}')",
            )
    return {str(name): str(item) for name, item in options.items()}


_RECOVERY_TYPES: dict[str, type] = typing.get_type_hints(RecoveryPolicy)
"""The type of each ``RecoveryPolicy`` field: int, float or bool."""


def _recovery(path: Path, key: str, value: Any) -> RecoveryPolicy:
    """``RecoveryPolicy`` fields (the rest keep their defaults), or ``never``."""
    if value == "never":
        return RecoveryPolicy.never()
    if isinstance(value, str):
        raise _error(
            path,
            key,
            f"expected a mapping of RecoveryPolicy fields or never, got {value!r}",
            "write e.g. recovery: {max_restarts: 20, standby: true}, or recovery: never",
        )
    values = _mapping(path, key, value)
    _check_keys(path, f"{key}.", values, _RECOVERY_TYPES)
    defaults = {f.name: f.default for f in dataclasses.fields(RecoveryPolicy)}
    parsed: dict[str, Any] = {}
    for name, item in values.items():
        expected = _RECOVERY_TYPES[name]
        fix = f"write e.g. {name}: {yaml.safe_dump(defaults[name]).splitlines()[0]}"
        if expected is bool:
            ok = isinstance(item, bool)
            wanted = "true or false"
        elif expected is int:
            ok = isinstance(item, int) and not isinstance(item, bool)
            wanted = "a whole number"
        else:
            ok = isinstance(item, int | float) and not isinstance(item, bool)
            wanted = "a number"
        if not ok:
            raise _error(path, f"{key}.{name}", f"expected {wanted}, got {item!r}", fix)
        parsed[name] = float(item) if expected is float else item
        try:
            RecoveryPolicy(**{name: parsed[name]})
        except ValueError as exc:
            raise _error(path, f"{key}.{name}", str(exc), fix) from None
    try:
        return RecoveryPolicy(**parsed)
    except ValueError as exc:
        raise _error(path, key, str(exc), "see swayhost.RecoveryPolicy") from None


def _name(path: Path, key: str, value: Any) -> str:
    """A worker name; it names a detached worker's record file, so it must fit one."""
    name = _text(path, key, value)
    try:
        return check_name(name)
    except ValueError as exc:
        raise _error(path, key, str(exc), "write e.g. name: hf-eval") from None


_PARSERS: dict[str, Callable[[Path, str, Any], Any]] = {
    "python": _python,
    "environment": _environment,
    "env": _env,
    "startup_timeout": _timeout,
    "launcher": _launcher,
    "ray": _ray,
    "cache_bytes": _size,
    "dynamic_batching": _flag,
    "background_start": _flag,
    "batch_window_s": _batch_window,
    "journal": _journal,
    "options": _options,
    "recovery": _recovery,
    "detach": _flag,
    "name": _name,
}
"""The keys of a worker section, each with its parser (named as in ``WorkerOptions``)."""

_ENV_PARSERS: dict[str, Callable[[Path, str, Any], Any]] = {
    "requirements": _requirements,
    "extras": _strings,
    "python": _python_request,
    "inherit": _flag,
    "find_links": _strings,
    "index_url": _text,
    "extra_index_urls": _strings,
    "pip_args": _strings,
    "install_env": _env,
    "installer": _installer,
    "timeout": _timeout,
}
"""The keys of an ``environment`` section (named as in ``EnvSpec``)."""


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
