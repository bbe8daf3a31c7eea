"""A sway custom backend whose model runs in the Node.js worker.

``entry_point: node_backend:NodeNgram`` in a ``sway.yaml`` makes sway's own
custom loader construct this class, which starts ``workers/node/worker.js``
through ``swayhost.spawn`` and hands sway the worker's views: sway runs its
probes on a model written in another language without knowing it. Kept free
of test-package imports because sway imports it in its own process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import swayhost

NODE_WORKER = Path(__file__).resolve().parents[2] / "workers" / "node" / "worker.js"


def node_spec(base: str = "builtin", adapter: Path | None = None, **options: str) -> Any:
    """The spec that runs the Node n-gram worker (any kind: the command decides)."""
    worker = swayhost.WorkerOptions(
        command=("node", str(NODE_WORKER)), options=options, name="node-ngram"
    )
    return swayhost.ModelSpec(kind="custom", base=base, adapter=adapter, worker=worker)


class NodeNgram:
    """sway's DifferentialBackend (and its optional protocols), served by Node."""

    def __init__(self, *, base_spec: Any, adapter_path: Path | None) -> None:
        self._backend = swayhost.spawn(node_spec(base_spec.base, adapter_path))
        self.safe_for_concurrent_views = self._backend.safe_for_concurrent_views
        # The Node worker advertises every optional protocol.
        self.as_scaled_adapter = self._backend.as_scaled_adapter  # type: ignore[attr-defined]
        self.as_null_adapter = self._backend.as_null_adapter  # type: ignore[attr-defined]
        self.preflight_finite_check = self._backend.preflight_finite_check  # type: ignore[attr-defined]

    def as_base(self) -> Any:
        return self._backend.as_base()

    def as_finetuned(self) -> Any:
        return self._backend.as_finetuned()

    def cache_identity(self) -> str:
        return self._backend.cache_identity()

    def close(self) -> None:
        self._backend.close()
