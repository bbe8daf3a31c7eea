"""swayhost: run dlm-sway scoring backends as out-of-process workers.

``build(spec)`` starts the worker for a model spec and returns a proxy that
behaves exactly like an in-process sway backend; a worker that crashes or
hangs is restarted and its calls retried (``RecoveryPolicy``), and closing
the proxy stops the worker. The host itself never imports torch,
transformers, peft or mlx.
"""

from swayhost.attached import attach
from swayhost.build import (
    TwoWorkerDifferential,
    build,
    build_many,
    build_two_separate,
    spawn,
)
from swayhost.detached import reattach
from swayhost.errors import (
    AttachError,
    BackendNotAvailable,
    ConfigError,
    EnvError,
    JournalError,
    PoisonInputError,
    RestartBudgetExhausted,
    SwayHostError,
    UnsupportedCapabilityError,
    WorkerBadArgument,
    WorkerBadSpec,
    WorkerCrashedError,
    WorkerError,
    WorkerInternalError,
    WorkerNotLoaded,
    WorkerOutOfMemory,
    WorkerStartError,
)
from swayhost.policy import RecoveryPolicy
from swayhost.proxy import RemoteBackend, RemoteView
from swayhost.ray.options import RayOptions
from swayhost.spec import ModelSpec, WorkerOptions
from swayhost.stats import BackendStats
from swayhost.tls import TLSConfig, read_token

__all__ = [
    "AttachError",
    "BackendNotAvailable",
    "BackendStats",
    "ConfigError",
    "EnvError",
    "JournalError",
    "ModelSpec",
    "PoisonInputError",
    "RayOptions",
    "RecoveryPolicy",
    "RemoteBackend",
    "RemoteView",
    "RestartBudgetExhausted",
    "SwayHostError",
    "TLSConfig",
    "TwoWorkerDifferential",
    "UnsupportedCapabilityError",
    "WorkerBadArgument",
    "WorkerBadSpec",
    "WorkerCrashedError",
    "WorkerError",
    "WorkerInternalError",
    "WorkerNotLoaded",
    "WorkerOptions",
    "WorkerOutOfMemory",
    "WorkerStartError",
    "attach",
    "build",
    "build_many",
    "build_two_separate",
    "read_token",
    "reattach",
    "spawn",
]
