"""swayhost: run dlm-sway scoring backends as out-of-process workers.

``build(spec)`` starts the worker for a model spec and returns a proxy that
behaves exactly like an in-process sway backend; a worker that crashes or
hangs is restarted and its calls retried (``RecoveryPolicy``), and closing
the proxy stops the worker. The host itself never imports torch,
transformers, peft or mlx.
"""

from swayhost.build import TwoWorkerDifferential, build, build_two_separate, spawn
from swayhost.errors import (
    BackendNotAvailable,
    JournalError,
    PoisonInputError,
    RestartBudgetExhausted,
    SwayHostError,
    UnsupportedCapabilityError,
    WorkerCrashedError,
    WorkerError,
    WorkerStartError,
)
from swayhost.policy import RecoveryPolicy
from swayhost.proxy import RemoteBackend, RemoteView
from swayhost.spec import ModelSpec, WorkerOptions
from swayhost.stats import BackendStats

__all__ = [
    "BackendNotAvailable",
    "BackendStats",
    "JournalError",
    "ModelSpec",
    "PoisonInputError",
    "RecoveryPolicy",
    "RemoteBackend",
    "RemoteView",
    "RestartBudgetExhausted",
    "SwayHostError",
    "TwoWorkerDifferential",
    "UnsupportedCapabilityError",
    "WorkerCrashedError",
    "WorkerError",
    "WorkerOptions",
    "WorkerStartError",
    "build",
    "build_two_separate",
    "spawn",
]
