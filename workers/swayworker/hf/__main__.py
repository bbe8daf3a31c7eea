"""``python -m swayworker.hf``: the HuggingFace + PEFT worker."""

from __future__ import annotations

import contextlib
import os
from typing import Any

from swayplugin.v1 import backend_pb2 as pb

from swayworker import spec as worker_spec
from swayworker.custom import spec_validation_error
from swayworker.resident import resident_limit
from swayworker.server import serve

TOKENIZER_THREADS_ENV = "TOKENIZERS_PARALLELISM"
"""Whether a fast tokenizer's ``encode_batch`` runs on its own thread pool (Rust's rayon).

The worker sets it to ``false`` unless the user set it. The pool is a second
set of threads, one per core, beside torch's intra-op team, which spin-waits
on those same cores after each forward pass. Eight short prompts take about
0.15 ms to tokenize on one thread, and waking the pool costs more than it
saves: without it a batch of 8 on the tiny model took 0.84-0.90x the time
(paired runs, two workers alternating; docs/performance.md).
"""


def load_hf(msg: pb.ModelSpec) -> Any:
    """Build the HF backend for a Load request (torch is imported only here)."""
    adapter = worker_spec.adapter_path(msg)
    if adapter is None:
        raise spec_validation_error(
            "hf backend requires an adapter path (set `adapter:` on the ft model)"
        )
    worker_spec.check_model_files(msg.base, adapter)
    os.environ.setdefault(TOKENIZER_THREADS_ENV, "false")
    from swayworker.hf.backend import HFDifferentialBackend
    from swayworker.hf.compat import explain

    limit = resident_limit(dict(msg.options))
    try:
        return HFDifferentialBackend(
            base_spec=worker_spec.from_proto(msg), adapter_path=adapter, max_resident=limit
        )
    except ValueError as exc:
        clearer = explain(exc)
        if clearer is None:
            raise
        raise clearer from exc


def import_frameworks() -> None:
    """Import what Load needs, ahead of it: most of an HF worker's start-up is imports.

    Also what a first Load builds once per process and keeps: transformers'
    table of checkpoint conversions compiles ~900 regular expressions
    (0.18 s of a 0.27 s first Load of the tiny model, against 0.025 s for a
    second). Run in the worker template, every worker forked from it has it
    built; it is pure Python (no torch op, no thread), so safe before a fork.
    """
    import peft
    import peft.tuners.lora  # noqa: F401
    import transformers

    import swayworker.hf.backend  # noqa: F401

    _ = (transformers.AutoTokenizer, transformers.AutoModelForCausalLM)  # lazy submodules
    with contextlib.suppress(Exception):  # a private table: absent from other versions
        from transformers import conversion_mapping

        conversion_mapping.get_checkpoint_conversion_mapping("llama")


if __name__ == "__main__":
    serve(loader=load_hf, worker_kind="hf", warmup=import_frameworks)
