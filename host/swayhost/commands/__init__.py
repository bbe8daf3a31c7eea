"""CLI subcommands, one module each, so commands stay small and independent.

Each module exposes ``register(subparsers)``, which adds its parser and sets
``func`` (taking the parsed args, returning an exit code) as a default.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from swayhost.commands import (
    certs,
    conformance,
    demo,
    describe,
    detached,
    env,
    stats,
    sweep,
    worker,
    workers,
)

Register = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]

COMMANDS: list[Register] = [
    demo.register,
    describe.register,
    conformance.register,
    env.register,
    workers.register,
    stats.register,
    sweep.register,
    worker.register,
    certs.register,
    detached.register,
]
"""Registration order is the order ``swayhost --help`` lists them."""
