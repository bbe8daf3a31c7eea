"""``python -m swayworker.mlx``: the MLX worker.

Spec options (``WorkerOptions(options=...)``): ``adapter_cache_dir``, where
converted adapters are cached (default: the user cache dir).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from swayplugin.v1 import backend_pb2 as pb

from swayworker import spec as worker_spec
from swayworker.custom import spec_validation_error
from swayworker.mlx import MLX_INSTALL_HINT
from swayworker.server import serve


def load_mlx(msg: pb.ModelSpec) -> Any:
    """Build the MLX backend for a Load request; without mlx, say what to install."""
    adapter = worker_spec.adapter_path(msg)
    if adapter is None:
        raise spec_validation_error(
            "mlx backend requires an adapter path (set `adapter:` on the ft model)"
        )
    worker_spec.check_model_files(msg.base, adapter)
    try:
        from swayworker.mlx.backend import MLXDifferentialBackend
    except ImportError as exc:
        raise ImportError(
            f"the mlx backend is not available in this worker's environment ({exc}); "
            f"install it there: {MLX_INSTALL_HINT}"
        ) from exc
    cache_dir = msg.options.get("adapter_cache_dir")
    return MLXDifferentialBackend(
        base_spec=worker_spec.from_proto(msg),
        adapter_path=adapter,
        cache_dir=Path(cache_dir) if cache_dir else None,
    )


if __name__ == "__main__":
    serve(loader=load_mlx, worker_kind="mlx")
