"""Host-side exceptions, and rebuilding a worker's exception on this side.

A worker reports a failure as (reason, exception type, message, attrs). The
host raises the *same* exception an in-process backend would have raised
when that class is one it can safely name here (builtins, dlm-sway's
errors); otherwise a host class that still subclasses the builtin with the
right meaning (``ValueError`` for a bad argument, ``MemoryError`` for OOM),
so callers' ``except`` clauses keep working. Nothing else is ever imported
to rebuild an error: the host must never import a worker's framework.
"""

from __future__ import annotations

import builtins
import importlib
import json
from typing import Any


class SwayHostError(Exception):
    """Root of the host's own exceptions."""


class WorkerStartError(SwayHostError):
    """A worker could not be started (bad command, handshake, timeout...)."""


class AttachError(WorkerStartError):
    """A worker reached by address refused this host or could not be reached.

    The message names the address, what went wrong (no listener, TLS
    handshake, certificate, bearer token) and the fix.
    """


class ConfigError(SwayHostError, ValueError):
    """The host's config file is unreadable or invalid; the message names file, key and fix."""


class EnvError(SwayHostError):
    """A worker environment could not be resolved or provisioned.

    Raised before any worker starts, so no worker ever runs on a broken env.
    The message names the environment (name, hash, where it is declared), the
    problem and the fix; ``reason`` says which kind of problem it is:
    ``python`` (no such interpreter version), ``interpreter`` (not a usable
    Python), ``unresolvable`` (a requirement cannot be satisfied),
    ``network`` (the package index cannot be reached), ``timeout``, ``busy``
    (another process holds the env's lock too long), ``spec`` (e.g. an unknown
    extra), ``installer`` (none available) or ``install`` (any other failure).
    """

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class WorkerCrashedError(SwayHostError):
    """A worker died or stopped answering while serving a call.

    ``worker`` names it, ``cause`` is the exit cause's kind (signal, code,
    oom, hang, ...) and ``stderr_tail`` its last stderr lines, when known.
    """

    def __init__(
        self,
        message: str,
        *,
        worker: str = "",
        cause: str = "",
        stderr_tail: list[str] | None = None,
    ) -> None:
        super().__init__(message)
        self.worker = worker
        self.cause = cause
        self.stderr_tail = stderr_tail or []


class RestartBudgetExhausted(WorkerCrashedError):
    """A worker crashed more often than its ``RecoveryPolicy`` allows; recovery gave up."""


class PoisonInputError(WorkerCrashedError):
    """This one request killed its worker every time it ran; it fails alone."""


class JournalError(SwayHostError):
    """A scoring journal file is corrupt, foreign or of another backend, so it is not used."""


class WorkerError(SwayHostError):
    """A worker reported a failure that has no closer Python equivalent here."""

    reason = "ERROR_REASON_INTERNAL"

    def __init__(self, message: str, *, hint: str = "", worker: str = "") -> None:
        super().__init__(message)
        self.hint = hint
        self.worker = worker


class WorkerBadArgument(WorkerError, ValueError):
    reason = "ERROR_REASON_BAD_ARGUMENT"


class WorkerBadSpec(WorkerError, ValueError):
    reason = "ERROR_REASON_BAD_SPEC"


class BackendNotAvailable(WorkerError):
    reason = "ERROR_REASON_BACKEND_NOT_AVAILABLE"


class UnsupportedCapabilityError(WorkerError, NotImplementedError):
    reason = "ERROR_REASON_UNSUPPORTED"


class WorkerOutOfMemory(WorkerError, MemoryError):
    reason = "ERROR_REASON_OUT_OF_MEMORY"


class WorkerNotLoaded(WorkerError, RuntimeError):
    reason = "ERROR_REASON_NOT_LOADED"


class WorkerInternalError(WorkerError, RuntimeError):
    reason = "ERROR_REASON_INTERNAL"


_FALLBACK_BY_REASON: dict[str, type[WorkerError]] = {
    cls.reason: cls
    for cls in (
        WorkerBadArgument,
        WorkerBadSpec,
        BackendNotAvailable,
        UnsupportedCapabilityError,
        WorkerOutOfMemory,
        WorkerNotLoaded,
        WorkerInternalError,
    )
}

_NAMEABLE_MODULES = ("builtins", "dlm_sway.core.errors")
"""Modules whose exception classes the host may rebuild by name."""


def spec_validation_error(message: str) -> Exception:
    """sway's ``SpecValidationError`` when dlm-sway is installed, else ``WorkerBadSpec``."""
    try:
        from dlm_sway.core.errors import SpecValidationError
    except ImportError:
        return WorkerBadSpec(message)
    error: Exception = SpecValidationError(message)
    return error


def rebuild_exception(
    *, reason: str, message: str, exception_type: str, attrs_json: str, hint: str, worker: str
) -> Exception:
    """The exception to raise on the host for a worker's reported failure."""
    exc = _named_exception(exception_type, message, attrs_json)
    if exc is None:
        fallback = _FALLBACK_BY_REASON.get(reason, WorkerInternalError)
        exc = fallback(message, hint=hint, worker=worker)
    if hint and hint not in message:
        exc.add_note(f"hint: {hint}")
    exc.add_note(f"raised in worker {worker!r}")
    return exc


def _named_exception(exception_type: str, message: str, attrs_json: str) -> Exception | None:
    module_name, _, class_name = exception_type.rpartition(".")
    if module_name not in _NAMEABLE_MODULES:
        return None
    try:
        module = builtins if module_name == "builtins" else importlib.import_module(module_name)
    except ImportError:
        return None
    cls = getattr(module, class_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Exception)):
        return None
    exc: Exception = cls.__new__(cls)
    Exception.__init__(exc, message)
    for key, value in _attrs(attrs_json).items():
        try:
            setattr(exc, key, value)
        except AttributeError:
            continue
    if not hasattr(exc, "source") and class_name == "SpecValidationError":
        exc.source = None  # type: ignore[attr-defined]
    return exc


def _attrs(attrs_json: str) -> dict[str, Any]:
    try:
        loaded = json.loads(attrs_json) if attrs_json else {}
    except json.JSONDecodeError:
        return {}
    return loaded if isinstance(loaded, dict) else {}
