"""Exceptions -> machine-readable errors, on the worker side of the wire.

The host turns the reason, exception type and attributes back into the
same Python exception an in-process backend would have raised, so the
mapping below is about *meaning* (what the caller should do), not about
the class hierarchy of any one framework.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import grpc
from swayplugin.v1 import backend_pb2 as pb

log = logging.getLogger("swayworker")

REASON_KEY = "sway-error-reason"
TYPE_KEY = "sway-error-type"
ATTRS_KEY = "sway-error-attrs"
HINT_KEY = "sway-error-hint"

GRPC_CODE_OF_REASON: dict[int, grpc.StatusCode] = {
    pb.ERROR_REASON_BAD_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    pb.ERROR_REASON_BAD_SPEC: grpc.StatusCode.INVALID_ARGUMENT,
    pb.ERROR_REASON_BACKEND_NOT_AVAILABLE: grpc.StatusCode.FAILED_PRECONDITION,
    pb.ERROR_REASON_NOT_LOADED: grpc.StatusCode.FAILED_PRECONDITION,
    pb.ERROR_REASON_UNSUPPORTED: grpc.StatusCode.UNIMPLEMENTED,
    pb.ERROR_REASON_OUT_OF_MEMORY: grpc.StatusCode.RESOURCE_EXHAUSTED,
    pb.ERROR_REASON_INTERNAL: grpc.StatusCode.INTERNAL,
}


class UnsupportedOperation(NotImplementedError):
    """The request needs a capability the backend does not have."""


class NotLoaded(RuntimeError):
    """A scoring call arrived before a successful Load."""


class BadSpec(ValueError):
    """The model spec given to Load is invalid (used when sway is absent)."""


@dataclass(frozen=True, slots=True)
class WireError:
    """An exception reduced to what travels on the wire (the host rebuilds it as an exception)."""

    reason: int
    message: str
    exception_type: str
    attrs_json: str
    hint: str

    def to_proto(self) -> pb.Error:
        return pb.Error(
            reason=self.reason,  # type: ignore[arg-type]
            message=self.message,
            exception_type=self.exception_type,
            attrs_json=self.attrs_json,
            hint=self.hint,
        )

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return (
            (REASON_KEY, pb.ErrorReason.Name(self.reason)),  # type: ignore[arg-type]
            (TYPE_KEY, self.exception_type),
            (ATTRS_KEY, self.attrs_json),
            (HINT_KEY, _ascii(self.hint)),
        )

    def abort(self, context: grpc.ServicerContext) -> None:
        """End the current unary call with this error (raises)."""
        context.set_trailing_metadata(self.trailing_metadata())
        context.abort(GRPC_CODE_OF_REASON[self.reason], self.message)


def classify(exc: BaseException) -> WireError:
    """Reduce ``exc`` to a wire error with the reason a caller can act on."""
    names = {cls.__name__ for cls in type(exc).__mro__}
    reason = _reason_of(exc, names)
    hint = ""
    if reason == pb.ERROR_REASON_BACKEND_NOT_AVAILABLE:
        hint = str(exc) if "pip install" in str(exc) else _install_hint(exc)
    return WireError(
        reason=reason,
        message=str(exc) or type(exc).__name__,
        exception_type=_wire_type(exc),
        attrs_json=json.dumps(_simple_attrs(exc)),
        hint=hint,
    )


def report(exc: BaseException) -> WireError:
    """``classify(exc)``, logging the traceback of an internal error (a bug, not bad input)."""
    error = classify(exc)
    if error.reason == pb.ERROR_REASON_INTERNAL:
        log.error("internal error", exc_info=exc)
    return error


def _reason_of(exc: BaseException, names: set[str]) -> int:
    if names & {"SpecValidationError", "BadSpec"}:
        return pb.ERROR_REASON_BAD_SPEC
    if names & {"BackendNotAvailableError", "ImportError"}:
        return pb.ERROR_REASON_BACKEND_NOT_AVAILABLE
    if isinstance(exc, NotLoaded):
        return pb.ERROR_REASON_NOT_LOADED
    if isinstance(exc, MemoryError) or any("OutOfMemory" in n for n in names):
        return pb.ERROR_REASON_OUT_OF_MEMORY
    if isinstance(exc, NotImplementedError):
        return pb.ERROR_REASON_UNSUPPORTED
    if isinstance(exc, ValueError | TypeError | KeyError | IndexError) or "ProbeError" in names:
        return pb.ERROR_REASON_BAD_ARGUMENT
    return pb.ERROR_REASON_INTERNAL


def _wire_type(exc: BaseException) -> str:
    """The qualified class name the host rebuilds: a stand-in's ``wire_type`` names sway's class."""
    wire_type = getattr(type(exc), "wire_type", None)
    if isinstance(wire_type, str):
        return wire_type
    return f"{type(exc).__module__}.{type(exc).__qualname__}"


def _install_hint(exc: BaseException) -> str:
    missing = getattr(exc, "name", None)
    if missing:
        return f"install {missing!r} in the worker's environment (pip install {missing})"
    return "install the backend's framework in the worker's environment"


def _simple_attrs(exc: BaseException) -> dict[str, Any]:
    """Public attributes that survive JSON (e.g. ProbeError.probe)."""
    attrs = getattr(exc, "__dict__", {})
    return {
        k: v
        for k, v in attrs.items()
        if not k.startswith("_") and isinstance(v, str | int | float | bool | type(None))
    }


def _ascii(text: str) -> str:
    # gRPC metadata values must be printable ASCII.
    return text.encode("ascii", "backslashreplace").decode("ascii")
