"""``python -m swayworker.hf``: the HuggingFace + PEFT worker."""

from __future__ import annotations

from typing import Any

from swayplugin.v1 import backend_pb2 as pb

from swayworker import spec as worker_spec
from swayworker.custom import spec_validation_error
from swayworker.server import serve


def load_hf(msg: pb.ModelSpec) -> Any:
    """Build the HF backend for a Load request (torch is imported only here)."""
    adapter = worker_spec.adapter_path(msg)
    if adapter is None:
        raise spec_validation_error(
            "hf backend requires an adapter path (set `adapter:` on the ft model)"
        )
    from swayworker.hf.backend import HFDifferentialBackend

    return HFDifferentialBackend(base_spec=worker_spec.from_proto(msg), adapter_path=adapter)


if __name__ == "__main__":
    serve(loader=load_hf, worker_kind="hf")
