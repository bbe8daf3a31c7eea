"""``make bench``: what running sway's backend out of process costs, and what batching buys.

The host's promise is that a worker behaves like an in-process sway backend;
this package measures the price of that promise on one tiny model: per-call
overhead of a unary RPC against sway's ``HuggingFaceDifferentialBackend`` in
process, the per-item cost of one ``ScoreBatch`` RPC, worker start-up, and
the host's import time. ``python -m bench`` prints the figures and writes
``bench/results/bench.md``.
"""

from bench.measure import BenchConfig, OpTiming, Report, measure

__all__ = ["BenchConfig", "OpTiming", "Report", "measure"]
