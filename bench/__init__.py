"""``make bench``: what running sway's backend out of process costs, and what it buys.

The host's promise is that a worker behaves like an in-process sway backend;
this package measures the price of that promise, side by side with
dlm-sway's ``HuggingFaceDifferentialBackend`` in the same run, on two models
(the tiny test model, and a ~50M-parameter random Llama where compute
dominates): per-call overhead of a unary RPC per op, and sweeps over batch
size, concurrent callers (dynamic batching), prompt length and top_k; the
host's result cache; worker start-up, the host's import time and the
worker's memory. ``python -m bench`` prints the figures and writes
``bench/results/bench.md`` and ``bench/results/bench.png``.
"""

from bench.config import BenchConfig, ModelPlan, quick_config
from bench.figures import ModelResult, Report, finite_positive
from bench.run import run

__all__ = [
    "BenchConfig",
    "ModelPlan",
    "ModelResult",
    "Report",
    "finite_positive",
    "quick_config",
    "run",
]
