"""Scale-out on Ray: workers placed as Ray actors, scoring calls over gRPC as usual.

``WorkerOptions(launcher="ray", ray=RayOptions(num_gpus=1, runtime_env=...))``
makes ``swayhost.spawn``/``build`` place the worker in a Ray actor; a
``RayWorkerPool`` (or ``evaluate_adapters``) spreads many adapters over a few
such workers. ``ray`` itself is imported only when one of these runs: this
package's ``__init__`` names them lazily.
"""

from __future__ import annotations

from typing import Any

from swayhost.ray.options import RayOptions

__all__ = ["RayOptions", "RayWorkerPool", "evaluate_adapters"]


def __getattr__(name: str) -> Any:
    if name in ("RayWorkerPool", "evaluate_adapters"):
        from swayhost.ray import pool  # imports ray itself: only when a pool is used

        return getattr(pool, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
