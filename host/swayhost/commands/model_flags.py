"""The flags that name a model to Load, shared by ``describe`` and ``worker serve``.

Both commands Load one model into one worker; one set of flags, with one
meaning each, and one way to turn them into a ``ModelSpec``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from swayhost.spec import ModelSpec, WorkerOptions


def add_model_flags(parser: argparse.ArgumentParser, base_help: str) -> None:
    """``--base --adapter --dtype --device --entry-point --endpoint``."""
    parser.add_argument("--base", help=base_help)
    parser.add_argument("--adapter", type=Path, help="its adapter folder (hf, mlx)")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--entry-point", help="custom kind: module:Class")
    parser.add_argument("--endpoint", help="api kind: the server's base URL")


def model_spec(args: argparse.Namespace, worker: WorkerOptions) -> ModelSpec:
    """The spec those flags (and ``--kind``) name, run by ``worker``."""
    return ModelSpec(
        kind=args.kind,
        base=args.base or "",
        adapter=args.adapter,
        dtype=args.dtype,
        device=args.device,
        entry_point=args.entry_point,
        endpoint=args.endpoint,
        worker=worker,
    )
