"""swayhost: run dlm-sway scoring backends as out-of-process workers.

``build(spec)`` starts the worker for a model spec and returns a proxy that
behaves exactly like an in-process sway backend; closing it stops the
worker. The host itself never imports torch, transformers, peft or mlx.
"""

from swayhost.build import TwoWorkerDifferential, build, build_two_separate, spawn
from swayhost.errors import (
    BackendNotAvailable,
    SwayHostError,
    UnsupportedCapabilityError,
    WorkerCrashedError,
    WorkerError,
    WorkerStartError,
)
from swayhost.proxy import RemoteBackend, RemoteView
from swayhost.spec import ModelSpec, WorkerOptions

__all__ = [
    "BackendNotAvailable",
    "ModelSpec",
    "RemoteBackend",
    "RemoteView",
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
