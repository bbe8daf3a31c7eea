"""swayworker: turn any sway-style backend object into a plugin worker process.

``serve(backend)`` (or ``serve(loader=...)``) is the whole SDK surface: it
advertises exactly what the object can do, speaks the contract in
``proto/swayplugin/v1/backend.proto`` over a private Unix socket, and exits
when its host goes away. Built-in workers live in the sub-packages
(``python -m swayworker.hf``, ``.custom``, ``.dummy``).
"""

from typing import Any

from swayworker.protocol import PROTOCOL_VERSION

__all__ = ["PROTOCOL_VERSION", "serve"]


def __getattr__(name: str) -> Any:
    """``serve`` is imported on first use: the host imports this package for
    the shared codec and protocol, and should not load the gRPC server side."""
    if name == "serve":
        from swayworker.server import serve

        return serve
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
