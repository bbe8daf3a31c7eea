"""``python -m bench.adapters``: what many adapters on one base cost (issue 17's goals).

Two figures, on the ~50M bench model with eight random LoRA adapters of it:

* **second adapter vs cold Load**: two cold Loads of the spec, the Load RPC
  on a freshly started worker (what ``build`` pays: the framework imports
  still finishing, then the model read and built) and on a worker that held
  another base (the model read and built again, imports done, the files in
  the page cache: the harshest comparison), against a Load naming the base
  the worker holds with another adapter (a swap), and against a Load adding
  one beside the others (``keep_resident``). Goal: the second adapter costs
  at most 10% of the cold Load.
* **RSS with 8 adapters resident** against RSS with one + 8 × an adapter's
  size on disk. Goal: at most 10% over.

Prints a Markdown table. Timings are medians of ``--reps`` runs; on a shared
machine they are noisy, so read them as orders of magnitude.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import swayhost
from swayhost.connection import WorkerConnection
from swayhost.local import worker_process
from swayhost.paths import cache_dir
from swayworker.hf.tiny import build_once

from bench.models import BenchModel, medium_model, tiny_model

ADAPTERS = 8
RECIPE_VERSION = 1
MIB = 2**20
PROMPT = "The river ran slowly past the old mill"


def random_adapters(model: BenchModel, count: int) -> list[Path]:
    """``count`` random LoRA adapters of ``model``'s base (nonzero B), built once and cached."""
    root = cache_dir() / "bench" / f"random-llama-50m-adapters-v{RECIPE_VERSION}"
    build_once(root, lambda staging: _build_adapters(model, staging, count), RECIPE_VERSION)
    return [root / f"adapter-{i + 1}" for i in range(count)]


def _build_adapters(model: BenchModel, staging: Path, count: int) -> None:
    """One peft model, its LoRA tensors redrawn per adapter: the base is read once."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(model.base_dir), dtype=torch.float32)
    peft_model: Any = PeftModel.from_pretrained(base, str(model.adapter_dir))
    for i in range(count):
        generator = torch.Generator().manual_seed(1000 + i)
        with torch.no_grad():
            for name, param in peft_model.named_parameters():
                if "lora_A" in name or "lora_B" in name:
                    param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
        peft_model.save_pretrained(staging / f"adapter-{i + 1}")


def _spec(base: Path, adapter: Path) -> swayhost.ModelSpec:
    return swayhost.ModelSpec(base=str(base), adapter=adapter, dtype="fp32", device="cpu")


def _timed_load(conn: WorkerConnection, spec: swayhost.ModelSpec, keep: bool = False) -> float:
    start = time.perf_counter()
    conn.load(spec.to_proto(), timeout=600, keep_resident=keep)
    return time.perf_counter() - start


def _rss(conn: WorkerConnection) -> int:
    import psutil

    return int(psutil.Process(conn.endpoint.pid).memory_info().rss)


def _score_ft(conn: WorkerConnection, adapter: Path) -> None:
    """One ft call naming ``adapter``: its tensors are touched, as in a real run."""
    from swayworker.codec import NextTokenDist, Request, ViewKey, request_to_proto

    request = request_to_proto(Request(ViewKey.ft(), NextTokenDist(PROMPT, 8)))
    request.adapter = str(adapter)
    conn.stub.Score(request, timeout=600)


def measure(reps: int) -> dict[str, float]:
    tiny = tiny_model()
    medium = medium_model(tiny.base_dir)
    adapters = random_adapters(medium, ADAPTERS)
    adapter_bytes = statistics.mean(
        (a / "adapter_model.safetensors").stat().st_size for a in adapters
    )
    fresh, cold, swap, added = [], [], [], []
    rss_one = rss_all = 0
    for _ in range(max(1, reps)):
        conn = WorkerConnection(worker_process(_spec(tiny.base_dir, tiny.adapter_dir)))
        conn.start()
        try:
            fresh.append(_timed_load(conn, _spec(medium.base_dir, adapters[0])))
            conn.load(_spec(tiny.base_dir, tiny.adapter_dir).to_proto(), timeout=600)
            cold.append(_timed_load(conn, _spec(medium.base_dir, adapters[0])))
            _score_ft(conn, adapters[0])
            rss_one = _rss(conn)
            swap.append(_timed_load(conn, _spec(medium.base_dir, adapters[1])))
            swap.append(_timed_load(conn, _spec(medium.base_dir, adapters[0])))
            for adapter in adapters[1:]:
                added.append(_timed_load(conn, _spec(medium.base_dir, adapter), keep=True))
            for adapter in adapters:
                _score_ft(conn, adapter)
            rss_all = _rss(conn)
        finally:
            conn.close()
    return {
        "fresh_s": statistics.median(fresh),
        "cold_s": statistics.median(cold),
        "swap_s": statistics.median(swap),
        "added_s": statistics.median(added),
        "rss_one": rss_one,
        "rss_all": rss_all,
        "adapter_bytes": adapter_bytes,
        "params": medium.params,
    }


def table(m: dict[str, float]) -> str:
    cold = m["cold_s"]
    budget = m["rss_one"] + ADAPTERS * m["adapter_bytes"]
    fresh = m["fresh_s"]

    def relative(seconds: float) -> str:
        return f"{seconds / cold:.1%} of the base-reread Load, {seconds / fresh:.1%} of the fresh"

    rows = [
        (
            "cold Load on a fresh worker (framework imports included)",
            f"{fresh * 1e3:.0f} ms",
            "",
            "",
        ),
        (
            "cold Load re-reading the base (imports done, page cache warm)",
            f"{cold * 1e3:.1f} ms",
            "",
            "",
        ),
        (
            "second adapter, swapped on the warm base",
            f"{m['swap_s'] * 1e3:.1f} ms",
            relative(m["swap_s"]),
            "≤ 10%",
        ),
        (
            "another adapter added beside (keep_resident)",
            f"{m['added_s'] * 1e3:.1f} ms",
            relative(m["added_s"]),
            "≤ 10%",
        ),
        ("worker RSS, one adapter", f"{m['rss_one'] / MIB:.0f} MiB", "", ""),
        (
            f"worker RSS, {ADAPTERS} adapters resident",
            f"{m['rss_all'] / MIB:.0f} MiB",
            f"{m['rss_all'] / budget:.1%} of one + {ADAPTERS} × {m['adapter_bytes'] / MIB:.1f} MiB",
            "≤ 110%",
        ),
    ]
    lines = [
        f"Many adapters, one base: the {m['params'] / 1e6:.0f}M bench model, fp32 on CPU",
        "",
        "| measure | value | relative | goal |",
        "|---|---|---|---|",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows],
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.adapters", description=__doc__)
    parser.add_argument("--reps", type=int, default=1, help="fresh workers measured (median)")
    args = parser.parse_args(argv)
    print(table(measure(args.reps)))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
