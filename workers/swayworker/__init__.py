"""swayworker: turn any sway-style backend object into a plugin worker process.

``serve(backend)`` (or ``serve(loader=...)``) is the whole SDK surface: it
advertises exactly what the object can do, speaks the contract in
``proto/swayplugin/v1/backend.proto`` over a private Unix socket, and exits
when its host goes away. Built-in workers live in the sub-packages
(``python -m swayworker.hf``, ``.custom``, ``.dummy``).
"""

from swayworker.protocol import PROTOCOL_VERSION
from swayworker.server import serve

__all__ = ["PROTOCOL_VERSION", "serve"]
