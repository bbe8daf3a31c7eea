"""Every exception the host raises, and how a worker's exception keeps its class here.

All of them derive from ``SwayHostError``, so ``except swayhost.SwayHostError``
catches whatever the host raises. An error a worker reported is rebuilt (in
``swayhost.translate``) as the *same* class an in-process backend would have
raised when the host may name that class (a builtin, or one of dlm-sway's
errors), combined with the host class of its reason; so ``except ValueError``
and ``except dlm_sway.core.errors.SpecValidationError`` keep working, and
the exception is still a ``SwayHostError``. Nothing is ever imported to
rebuild an error but builtins and dlm-sway: the host never imports a
worker's framework.

The tree::

    SwayHostError
    ├── ConfigError (+ ValueError)        the config file is invalid
    ├── EnvError                          a worker environment cannot be provisioned
    ├── JournalError                      a journal file is corrupt or foreign
    ├── CacheError                        the host's cache or state folder cannot be written
    ├── WorkerStartError                  a worker could not be started
    │   └── AttachError                   a worker reached by address refused this host
    ├── WorkerCrashedError                a worker died or hung during a call
    │   ├── RestartBudgetExhausted        ... more often than the RecoveryPolicy allows
    │   └── PoisonInputError              ... every time this one request ran
    └── WorkerError                       a worker (or the host, for a spec) reported a failure
        ├── WorkerBadArgument (+ ValueError)
        ├── WorkerBadSpec (+ ValueError)  also sway's SpecValidationError when installed
        ├── BackendNotAvailable
        ├── UnsupportedCapabilityError (+ NotImplementedError)
        ├── WorkerOutOfMemory (+ MemoryError)
        ├── WorkerNotLoaded (+ RuntimeError)
        └── WorkerInternalError (+ RuntimeError)
"""

from __future__ import annotations

from typing import Any


class SwayHostError(Exception):
    """Root of every exception the host raises."""


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


class CacheError(SwayHostError):
    """The host's cache or state folder cannot be created or written.

    The message names the folder, the system's reason and the variable that
    moves it, instead of a ``PermissionError`` traceback from deep inside.
    """


class WorkerError(SwayHostError):
    """A worker reported a failure that has no closer Python equivalent here."""

    reason = "ERROR_REASON_INTERNAL"

    def __init__(self, message: str, *, hint: str = "", worker: str = "") -> None:
        super().__init__(message)
        self.hint = hint
        self.worker = worker


class WorkerBadArgument(WorkerError, ValueError):
    """A request's arguments are invalid (the worker's ``ValueError``)."""

    reason = "ERROR_REASON_BAD_ARGUMENT"


class WorkerBadSpec(WorkerError, ValueError):
    """A model spec is invalid (sway's ``SpecValidationError``)."""

    reason = "ERROR_REASON_BAD_SPEC"


class BackendNotAvailable(WorkerError):
    """The worker lacks its framework; ``hint`` says what to install."""

    reason = "ERROR_REASON_BACKEND_NOT_AVAILABLE"


class UnsupportedCapabilityError(WorkerError, NotImplementedError):
    """The worker does not offer this operation or view."""

    reason = "ERROR_REASON_UNSUPPORTED"


class WorkerOutOfMemory(WorkerError, MemoryError):
    """The worker ran out of (GPU) memory serving this request."""

    reason = "ERROR_REASON_OUT_OF_MEMORY"


class WorkerNotLoaded(WorkerError, RuntimeError):
    """A call reached a worker that has no model loaded."""

    reason = "ERROR_REASON_NOT_LOADED"


class WorkerInternalError(WorkerError, RuntimeError):
    """Any other failure inside the worker."""

    reason = "ERROR_REASON_INTERNAL"


FALLBACK_BY_REASON: dict[str, type[WorkerError]] = {
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
"""The host class of each wire reason: what a worker's error is at least."""


def spec_validation_error(message: str) -> Exception:
    """A bad spec, as sway reports it: ``WorkerBadSpec``, and sway's ``SpecValidationError``."""
    try:
        from dlm_sway.core.errors import SpecValidationError  # only when there is an error
    except ImportError:
        return WorkerBadSpec(message)
    error = host_flavoured(SpecValidationError, WorkerBadSpec)(message)
    error.source = None  # type: ignore[attr-defined]  # sway's constructor sets it; ours is not run
    return error


def as_host_error(error: Exception, host_class: type[WorkerError]) -> Exception:
    """``error`` itself when it is a host error already, else the same error as a host error.

    Its class becomes ``host_flavoured(type(error), host_class)``: same
    message, arguments and attributes, same name in tracebacks.
    """
    if isinstance(error, SwayHostError):
        return error
    cls = host_flavoured(type(error), host_class)
    flavoured = cls(*error.args)  # its constructor is Exception's (see host_flavoured)
    flavoured.__dict__.update(getattr(error, "__dict__", {}))
    flavoured.__cause__, flavoured.__traceback__ = error.__cause__, error.__traceback__
    return flavoured


_FLAVOURED: dict[tuple[type[Exception], type[WorkerError]], type[Exception]] = {}


def host_flavoured(cls: type[Exception], host_class: type[WorkerError]) -> type[Exception]:
    """A subclass of both ``cls`` and ``host_class`` that still reads as ``cls``.

    It keeps ``cls``'s name and module (tracebacks and ``repr`` look the
    same) and pickles as plain ``cls``, since only this process knows the
    combined class. Its constructor is ``Exception``'s: ``cls``'s own may
    take other arguments (sway's take keywords), and instances are built
    from a message only.
    """
    key = (cls, host_class)
    if key not in _FLAVOURED:
        _FLAVOURED[key] = _combine(cls, host_class)
    return _FLAVOURED[key]


def _combine(cls: type[Exception], host_class: type[WorkerError]) -> type[Exception]:
    if issubclass(cls, host_class):
        return cls
    for bases in ((cls, host_class), (host_class, cls), (cls, WorkerError)):
        try:
            combined = type(
                cls.__name__,
                bases,
                {
                    "__module__": cls.__module__,
                    "__qualname__": cls.__qualname__,
                    "__init__": _message_only_init,
                    "__reduce__": _reduce_as(cls),
                    "hint": "",
                    "worker": "",
                },
            )
        except TypeError:  # incompatible layouts or method orders: try the next pairing
            continue
        return combined
    return cls


def _message_only_init(self: Exception, *args: Any, **_: Any) -> None:
    Exception.__init__(self, *args)


def _reduce_as(cls: type[Exception]) -> Any:
    def reduce(self: Exception) -> tuple[Any, ...]:
        return (_rebuilt, (cls, self.args, dict(getattr(self, "__dict__", {}))))

    return reduce


def _rebuilt(cls: type[Exception], args: tuple[Any, ...], state: dict[str, Any]) -> Exception:
    """Unpickle a host-flavoured exception as its plain class (only this process has the other)."""
    error: Exception = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error
