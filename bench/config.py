"""How much a run measures: one plan per model, and the settings every model shares.

The machine the bench runs on has two cores and other tenants, so the plans
are sized by time: the tiny model is cheap and gets many rounds; the ~50M
model spends tens of milliseconds per forward pass on one thread and gets
fewer rounds and smaller reference samples. ``--quick`` is a smoke run that
exercises every sweep on the tiny model in about a minute.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

MODELS = ("tiny", "50m")


@dataclass(frozen=True)
class ModelPlan:
    """What to measure on one model, and how many times."""

    rounds: int = 10
    """Rounds of the per-op table (in-process vs host unary vs host batched)."""
    batch: int = 64
    """Texts per round and op in the per-op table (its ``*_many`` call takes them all)."""
    block: int = 8
    """Unary calls per interleaved block."""
    warmup: int = 8
    top_k: int = 64
    """``next_token_dist``'s top_k in the op table and in every sweep but the top_k one."""
    sweep_rounds: int = 9
    batch_sizes: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64, 128)
    callers: tuple[int, ...] = (1, 2, 4, 8, 16)
    per_caller: int = 16
    """Unary calls each concurrent caller makes per round."""
    reference_cap: int = 32
    """In-process calls per round that stand for sequential in-process speed in the
    batch and caller sweeps (every batch size would otherwise repeat the same
    sequential measurement at full length)."""
    prompt_tokens: tuple[int, ...] = (8, 32, 128, 512)
    """Clipped to the model's context (the tiny model holds 256 tokens)."""
    top_ks: tuple[int, ...] = (8, 64, 512, 0)
    """0 stands for the full vocabulary; values past it are clipped to it."""
    sweep_block: int = 16
    """Unary calls per round and side in the prompt-length and top_k sweeps."""
    cache_calls: int = 64
    """Texts scored twice (round trip, then cache hit) in the cache measurement."""
    startup_reps: int = 3
    """Host backends built (spawn, handshake, Load) for the with-model start-up figure."""
    sway_run_rounds: int = 3
    """ABBA rounds of the end-to-end ``sway run`` (each runs the command twice)."""


@dataclass(frozen=True)
class BenchConfig:
    """The whole run: which models, their plans, and what they share."""

    models: tuple[str, ...] = MODELS
    plans: dict[str, ModelPlan] = field(
        default_factory=lambda: {
            "tiny": ModelPlan(),
            "50m": ModelPlan(
                rounds=8,
                batch=16,
                block=4,
                warmup=4,
                sweep_rounds=7,
                per_caller=6,
                reference_cap=8,
                sweep_block=4,
                cache_calls=16,
                startup_reps=3,
                sway_run_rounds=3,
            ),
        }
    )
    ready_reps: int = 5
    """Workers started without a model for the spawn → ready figure."""
    import_reps: int = 5
    restart_reps: int = 5
    real_size_rounds: int = 5
    """ABBA rounds of every op on the real-size model (``bench.realsize``)."""
    """Worker kills per mode (cold, standby) on the tiny model for the restart figures."""
    seed: int = 1729
    threads: int = 0
    """torch intra-op threads, the same in this process and in the worker (0: torch's default).

    torch's default by default, because that is what users run: nobody sets
    ``OMP_NUM_THREADS`` before ``sway run``. ``--threads 1`` measures the
    one-thread setting beside it (quieter on a shared machine, where a
    two-thread OpenMP team stalls whenever another tenant takes a core).
    """
    quick: bool = False

    def plan(self, model: str) -> ModelPlan:
        return self.plans[model]

    def overriding(self, **changes: int | None) -> BenchConfig:
        """The same config with integer plan fields replaced in every model (``None``: keep)."""
        given: dict[str, Any] = {k: v for k, v in changes.items() if v is not None}
        if not given:
            return self
        return replace(self, plans={m: replace(p, **given) for m, p in self.plans.items()})


def quick_config() -> BenchConfig:
    """A smoke run: every sweep, on the tiny model only, with a few repetitions."""
    tiny = ModelPlan(
        rounds=1,
        batch=8,
        block=4,
        warmup=2,
        sweep_rounds=1,
        batch_sizes=(1, 4, 16),
        callers=(1, 8),
        per_caller=4,
        reference_cap=8,
        prompt_tokens=(8, 64),
        top_ks=(8, 0),
        sweep_block=4,
        cache_calls=8,
        startup_reps=1,
        sway_run_rounds=1,
    )
    return BenchConfig(
        models=("tiny",),
        plans={"tiny": tiny},
        ready_reps=2,
        import_reps=1,
        restart_reps=2,
        real_size_rounds=1,
        quick=True,
    )
