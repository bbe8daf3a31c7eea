"""The custom worker: loads a user's backend class by ``entry_point`` inside the worker.

Validation and error wording follow sway's own ``_load_custom`` so a user
sees the same messages whether the backend runs in process or out of it.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
from collections.abc import Iterator
from typing import Any

from swayplugin.v1 import backend_pb2 as pb

from swayworker import spec as worker_spec
from swayworker.capabilities import protocols_of
from swayworker.protocol import IN_WORKER_ENV

ENTRY_POINT_FORM = "'pkg.module:ClassName'"


def spec_validation_error(message: str) -> Exception:
    """sway's ``SpecValidationError`` when importable, else ``BadSpec``."""
    try:
        from dlm_sway.core.errors import SpecValidationError
    except ImportError:
        from swayworker.errors import BadSpec

        return BadSpec(message)
    error: Exception = SpecValidationError(message)
    return error


def check_entry_point(entry: str | None) -> tuple[str, str]:
    """Split ``entry`` into (module, class), with sway's errors when malformed."""
    if not entry:
        raise spec_validation_error(
            f"kind='custom' requires an entry_point of the form {ENTRY_POINT_FORM}"
        )
    if ":" not in entry:
        raise spec_validation_error(f"entry_point must be {ENTRY_POINT_FORM}, got {entry!r}")
    module_path, _, class_name = entry.partition(":")
    if not module_path or not class_name:
        raise spec_validation_error(f"entry_point must be {ENTRY_POINT_FORM}, got {entry!r}")
    return module_path, class_name


@contextlib.contextmanager
def importing(entry: str, module_path: str) -> Iterator[None]:
    """Name the module being imported in the worker's mark, for the host to quote.

    A user's script that builds a backend when imported (no ``__main__``
    guard) reaches ``swayhost.build`` inside this worker; the host refuses,
    and this is how its message names the script to fix.
    """
    mark = os.environ.get(IN_WORKER_ENV, "worker")
    try:
        origin = importlib.util.find_spec(module_path)
    except (ImportError, ValueError):
        origin = None
    where = f" ({origin.origin})" if origin is not None and origin.origin else ""
    os.environ[IN_WORKER_ENV] = f"{mark}, importing the entry_point {entry!r}{where}"
    try:
        yield
    finally:
        os.environ[IN_WORKER_ENV] = mark


def load_custom(msg: pb.ModelSpec) -> Any:
    """Import, construct and protocol-check the user's class (sway's B20 rules)."""
    entry = msg.entry_point
    module_path, class_name = check_entry_point(entry)
    try:
        with importing(entry, module_path):
            module = importlib.import_module(module_path)
    except ImportError as exc:
        raise spec_validation_error(
            f"custom backend: cannot import module {module_path!r}: {exc}"
        ) from exc
    cls = getattr(module, class_name, None)
    if cls is None:
        raise spec_validation_error(
            f"custom backend: module {module_path!r} has no attribute {class_name!r}"
        )
    try:
        instance = cls(
            base_spec=worker_spec.sway_spec(msg), adapter_path=worker_spec.adapter_path(msg)
        )
    except TypeError as exc:
        raise spec_validation_error(
            f"custom backend {entry!r} constructor signature mismatch: {exc}. "
            "Expected Cls(base_spec: ModelSpec, adapter_path: Path | None)"
        ) from exc
    protocols = protocols_of(instance)
    if not protocols:
        raise spec_validation_error(
            f"custom backend {entry!r} does not satisfy DifferentialBackend "
            "(needs as_base() and as_finetuned() context managers)"
        )
    # sway records only the differential protocols here; preflight is separate.
    instance.__sway_protocols__ = tuple(p for p in protocols if p != "PreflightCheckable")
    return instance
