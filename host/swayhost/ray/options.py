"""How Ray places a worker: the actor's resources and environment.

Kept apart from the Ray code itself so ``WorkerOptions`` (and the host
config) can name these settings without importing ``ray``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RayOptions:
    """The Ray actor a worker runs in (``WorkerOptions(launcher="ray", ray=RayOptions(...))``).

    ``num_cpus``, ``num_gpus`` and ``resources`` are the actor's resource
    request, so Ray places the worker on a node that has them; ``runtime_env``
    is Ray's own (``pip``, ``env_vars``, ``working_dir``...), and the worker
    runs inside it. ``address`` goes to ``ray.init`` when this process is not
    connected to Ray yet (None: Ray's default, ``RAY_ADDRESS`` or a new
    local cluster).

    ``tls`` decides how the host reaches the worker: None (default) uses
    mutual TLS exactly when Ray placed the worker on another node (it then
    listens on its node's address) and loopback otherwise; True always uses
    it. The certificates are made for the occasion and pinned (``swayhost.ray.tls``).
    """

    address: str | None = None
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    resources: Mapping[str, float] = field(default_factory=dict)
    runtime_env: Mapping[str, object] | None = None
    tls: bool | None = None

    def __post_init__(self) -> None:
        if self.num_cpus < 0 or self.num_gpus < 0:
            raise ValueError(
                f"RayOptions: num_cpus and num_gpus must be >= 0, got {self.num_cpus}, "
                f"{self.num_gpus}"
            )

    def actor_options(self) -> dict[str, object]:
        """Keyword arguments for ``ActorClass.options(...)``."""
        options: dict[str, object] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}
        if self.resources:
            options["resources"] = dict(self.resources)
        if self.runtime_env is not None:
            options["runtime_env"] = dict(self.runtime_env)
        return options
