"""The one place where a failed call becomes the exception its caller sees.

A call can fail three ways, and each has exactly one function here:

* the worker *answered* with an error (a unary RPC's status with the error
  in its trailing metadata, or one item of a ScoreBatch): ``answered`` and
  ``item_error`` rebuild the exception an in-process backend would have
  raised (see ``swayhost.errors``). Such an answer is final: retrying gives
  the same error.
* the call got *no answer* (the worker or its socket went away, or the
  deadline passed): ``no_answer`` says so, and ``lost`` describes it as a
  ``WorkerCrashedError`` with the exit cause and the last stderr lines. The
  supervisor retries these instead, when recovery is on.
* anything else is a transport failure with a status code: ``lost`` too.

httpx's ``map_httpcore_exceptions`` plays the same part for its transports.
"""

from __future__ import annotations

import builtins
import importlib
import json
from typing import Any

import grpc
from swayplugin.v1 import backend_pb2 as pb
from swayworker.errors import ATTRS_KEY, HINT_KEY, REASON_KEY, TYPE_KEY

from swayhost.endpoint import WorkerEndpoint
from swayhost.errors import (
    FALLBACK_BY_REASON,
    WorkerCrashedError,
    WorkerInternalError,
    as_host_error,
)

Outcome = pb.ScoreResponse | Exception
"""What one request of a batch came to: its response, or the exception for it alone."""

GONE_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})
"""Codes of a call that got no answer because the worker or its socket went away."""

_NAMEABLE_MODULES = ("builtins", "dlm_sway.core.errors", "swayhost.errors")
"""Modules whose exception classes the host may rebuild by name (its own included: a
worker refusing to start a worker raises ``WorkerStartError``, and so does the build)."""


def status_code(exc: grpc.RpcError) -> grpc.StatusCode:
    """The failed call's status code (UNKNOWN for an error that carries none)."""
    code: grpc.StatusCode = exc.code() if hasattr(exc, "code") else grpc.StatusCode.UNKNOWN
    return code


def no_answer(exc: grpc.RpcError) -> bool:
    """Whether the call got no answer at all: the worker went away, or the deadline passed."""
    code = status_code(exc)
    return code in GONE_CODES or code == grpc.StatusCode.DEADLINE_EXCEEDED


def answered(exc: grpc.RpcError, worker: str) -> Exception | None:
    """The caller's exception when the worker itself answered with an error, else None.

    None means the call failed in transport, which says nothing about the request.
    """
    raw: Any = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else ()
    metadata: dict[str, Any] = {str(k): v for k, v in raw or ()}
    if REASON_KEY not in metadata:
        return None
    return rebuild_exception(
        reason=str(metadata[REASON_KEY]),
        message=exc.details() or "",
        exception_type=str(metadata.get(TYPE_KEY, "")),
        attrs_json=str(metadata.get(ATTRS_KEY, "")),
        hint=str(metadata.get(HINT_KEY, "")),
        worker=worker,
    )


def item_error(error: pb.Error, worker: str) -> Exception:
    """The caller's exception for one failed item of a ScoreBatch."""
    return rebuild_exception(
        reason=pb.ErrorReason.Name(error.reason),
        message=error.message,
        exception_type=error.exception_type,
        attrs_json=error.attrs_json,
        hint=error.hint,
        worker=worker,
    )


def batch_outcomes(items: list[pb.ScoreBatchItem], worker: str) -> list[Outcome]:
    """Each item of a ScoreBatch answer as its response or its exception."""
    return [item_error(i.error, worker) if i.HasField("error") else i.result for i in items]


def lost(exc: grpc.RpcError, endpoint: WorkerEndpoint, worker: str) -> WorkerCrashedError:
    """A call that failed in transport: why, from the worker's side when it is gone."""
    code = status_code(exc)
    if no_answer(exc):
        endpoint.wait(0.5)
        cause = (
            f"exited with {endpoint.describe_exit()}"
            if not endpoint.alive()
            else f"did not answer ({code.name})"
        )
        return WorkerCrashedError(
            f"worker {worker!r} (pid {endpoint.pid}) {cause} during a call."
            f"{endpoint.stderr_excerpt()}"
        )
    return WorkerCrashedError(f"worker {worker!r} failed a call with {code.name}: {exc.details()}")


def rebuild_exception(
    *, reason: str, message: str, exception_type: str, attrs_json: str, hint: str, worker: str
) -> Exception:
    """The exception to raise on the host for a worker's reported failure."""
    host_class = FALLBACK_BY_REASON.get(reason, WorkerInternalError)
    named = _named_exception(exception_type, message, attrs_json)
    exc = host_class(message, hint=hint, worker=worker) if named is None else named
    exc = as_host_error(exc, host_class)
    if named is not None:
        exc.hint, exc.worker = hint, worker  # type: ignore[attr-defined]
    if hint and hint not in message:
        exc.add_note(f"hint: {hint}")
    exc.add_note(f"raised in worker {worker!r}")
    return exc


def nameable(exception_type: str) -> bool:
    """Whether ``exception_type`` lies in a module whose classes the host rebuilds by name."""
    return exception_type.rpartition(".")[0] in _NAMEABLE_MODULES


def named_class(exception_type: str) -> type[Exception] | None:
    """The exception class the host rebuilds for ``exception_type``, None when it cannot.

    The conformance kit asks it too, so it judges a worker's names by the
    host's own rule rather than a copy of it.
    """
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
    return cls


def _named_exception(exception_type: str, message: str, attrs_json: str) -> Exception | None:
    cls = named_class(exception_type)
    if cls is None:
        return None
    exc: Exception = cls.__new__(cls)
    Exception.__init__(exc, message)
    for key, value in _attrs(attrs_json).items():
        try:
            setattr(exc, key, value)
        except AttributeError:
            continue
    if not hasattr(exc, "source") and cls.__name__ == "SpecValidationError":
        exc.source = None  # type: ignore[attr-defined]
    return exc


def _attrs(attrs_json: str) -> dict[str, Any]:
    try:
        loaded = json.loads(attrs_json) if attrs_json else {}
    except json.JSONDecodeError:
        return {}
    return loaded if isinstance(loaded, dict) else {}
