"""Discover what a backend object can do, the way sway itself would.

sway checks optional protocols with ``isinstance`` against runtime-checkable
Protocols, i.e. by the presence of methods. The worker advertises exactly
what that check would find, so a proxy on the host side can satisfy the
same protocols and no more.
"""

from __future__ import annotations

import functools
import platform
import sys
from typing import Any

from swayplugin.v1 import backend_pb2 as pb

from swayworker.protocol import MAX_MESSAGE_BYTES

DEFAULT_MAX_BATCH = 256
"""Requests per ScoreBatch when the backend states no limit of its own (the host
assumes the same of a worker that advertises none)."""


def _has(obj: Any, name: str) -> bool:
    return callable(getattr(obj, name, None))


def protocols_of(backend: Any) -> list[str]:
    """Names of the sway protocols ``backend`` satisfies, in sway's order."""
    if not (_has(backend, "as_base") and _has(backend, "as_finetuned")):
        return []
    names = ["DifferentialBackend"]
    if _has(backend, "as_null_adapter"):
        names.append("NullCalibratedBackend")
    if _has(backend, "as_scaled_adapter"):
        names.append("ScalableDifferentialBackend")
    if _has(backend, "preflight_finite_check"):
        names.append("PreflightCheckable")
    return names


def capabilities_of(backend: Any) -> pb.Capabilities:
    """Capabilities advertised for ``backend``.

    Per-operation flags default to true; a backend that cannot serve an
    operation (an API server without ``echo``) says so with an
    ``operations()`` method returning the names it supports.
    """
    ops_fn = getattr(backend, "operations", None)
    ops = (
        set(ops_fn())
        if callable(ops_fn)
        else {
            "logprob_of",
            "rolling_logprob",
            "next_token_dist",
            "generate",
        }
    )
    protocols = protocols_of(backend)
    return pb.Capabilities(
        differential="DifferentialBackend" in protocols,
        scalable="ScalableDifferentialBackend" in protocols,
        null_calibrated="NullCalibratedBackend" in protocols,
        preflight="PreflightCheckable" in protocols,
        generate="generate" in ops,
        batch=bool(getattr(backend, "supports_batched_forward", False)),
        concurrent_views=bool(getattr(backend, "safe_for_concurrent_views", False)),
        logprob_of="logprob_of" in ops,
        rolling_logprob="rolling_logprob" in ops,
        next_token_dist="next_token_dist" in ops,
        protocols=protocols,
        resident_adapters=_has(backend, "resident_adapter"),
    )


def limits_of(backend: Any) -> pb.Limits:
    return pb.Limits(
        max_batch=int(getattr(backend, "max_batch", DEFAULT_MAX_BATCH)),
        max_message_bytes=MAX_MESSAGE_BYTES,
        max_top_k=int(getattr(backend, "max_top_k", 0)),
        max_prompt_tokens=int(getattr(backend, "max_prompt_tokens", 0)),
        max_resident_adapters=int(getattr(backend, "max_resident_adapters", 0)),
    )


def model_info_of(backend: Any, spec: pb.ModelSpec | None) -> pb.ModelInfo:
    identity = getattr(backend, "cache_identity", None)
    return pb.ModelInfo(
        loaded=True,
        vocab_size=int(getattr(backend, "vocab_size", 0) or 0),
        device=str(getattr(backend, "device", "") or ""),
        dtype=str(getattr(backend, "dtype", "") or ""),
        cache_identity=str(identity()) if callable(identity) else "",
        base=spec.base if spec is not None else "",
        adapter_path=spec.adapter if spec is not None else "",
    )


INSTALLED_FRAMEWORKS = (
    "grpcio",
    "protobuf",
    "numpy",
    "dlm-sway",
    "torch",
    "transformers",
    "peft",
    "tokenizers",
    "mlx",
    "mlx-lm",
)
"""Distributions reported as installed in the worker's environment.

Read from package metadata (nothing is imported), so a worker reports its
env's versions before any Load (``swayhost workers`` shows them); after Load
the backend's own ``framework_versions()`` (what it really imported) wins.
"""


@functools.cache
def _installed_versions() -> tuple[tuple[str, str], ...]:
    """``INSTALLED_FRAMEWORKS`` found in this process's environment, looked up once.

    Reading package metadata costs about 5 ms, paid on every Describe and
    Load: half of an adapter swap on the 50M bench model. What the worker
    imported cannot change while it runs, so once is enough.
    """
    from importlib import metadata  # not at import: the host imports this module

    found = [("python", platform.python_version())]
    for dist in INSTALLED_FRAMEWORKS:
        try:
            found.append((dist, metadata.version(dist)))
        except metadata.PackageNotFoundError:
            continue
    return tuple(found)


def framework_versions_of(backend: Any) -> dict[str, str]:
    """The frameworks installed here, overridden by the backend's own once loaded."""
    versions = dict(_installed_versions())
    own = getattr(backend, "framework_versions", None)
    if callable(own):
        versions.update({str(k): str(v) for k, v in own().items()})
    return versions


def runtime_info(pid: int) -> pb.RuntimeInfo:
    impl = platform.python_implementation()
    return pb.RuntimeInfo(
        language="python",
        runtime=f"{impl} {platform.python_version()}",
        pid=pid,
        executable=sys.executable,
    )
