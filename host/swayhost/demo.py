"""``swayhost demo``: an end-to-end differential check through a real worker.

Runs the embedded tiny model and its trained LoRA adapter (built once with
the worker's interpreter, cached under the user cache dir) in an HF worker,
or the toy dummy worker, and reports what sway would ask: does the adapter
move the model, how does the effect scale with lam, and how does it compare
with null adapters of the same shape.

The HF worker runs in a provisioned env: the host config's ``workers.hf``
section when there is one, else ``DEMO_ENV``, which layers the ``hf`` extra
on the host's own site-packages. On a machine whose host venv has torch,
that env installs nothing heavy: it is built once (seconds) and reused.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

import swayhost
from swayhost import config, envs
from swayhost.console import step, table
from swayhost.paths import cache_dir, writable
from swayhost.proxy import RemoteBackend
from swayhost.spec import ModelSpec, WorkerOptions

PROMPTS = [
    ("The quick brown fox", " jumps over the lazy dog"),
    ("Once upon a time", " there was a small model"),
    ("The adapter learned", " to speak about lighthouses"),
    ("In the morning the keeper", " climbed the tower"),
]
LAMBDAS = [0.0, 0.25, 0.5, 0.75, 1.0, 1.25]
NULL_SEEDS = [0, 1, 2, 3, 4]


@dataclass
class PromptRow:
    prompt: str
    completion: str
    base_logprob: float
    ft_logprob: float
    kl_ft_base: float


@dataclass
class DemoReport:
    worker: dict[str, Any]
    prompts: list[PromptRow]
    ablation: list[tuple[float, float]]
    null_kls: list[float]
    adapter_kl: float
    z_score: float


DEMO_ENV = envs.EnvSpec(
    extras=("hf",),
    inherit=True,
    name="demo-hf",
    origin="the demo's default; a workers.hf section in the host config replaces it",
)
"""The HF worker's env when the host config does not say: torch, transformers, peft."""


def tiny_model_paths(python: str) -> dict[str, str]:
    """Build (or reuse) the tiny model with the worker's interpreter."""
    out = subprocess.run(
        [python, "-m", "swayworker.hf.tiny", str(writable(cache_dir() / "tiny-model"))],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"building the tiny model failed:\n{out.stderr[-2000:]}")
    paths: dict[str, str] = json.loads(out.stdout)
    return paths


def _kl(p: Any, q: Any) -> float:
    """KL(p || q) over full-vocabulary distributions aligned by token id."""
    lp = np.empty(p.vocab_size)
    lq = np.empty(q.vocab_size)
    lp[p.token_ids] = p.logprobs
    lq[q.token_ids] = q.logprobs
    return float(np.sum(np.exp(lp) * (lp - lq)))


def _mean_kl(backend: RemoteBackend, enter: Any, base_dists: list[Any], vocab: int) -> float:
    with enter() as view:
        dists = view.next_token_dist_many([p for p, _ in PROMPTS], top_k=vocab)
    return float(np.mean([_kl(d, b) for d, b in zip(dists, base_dists, strict=True)]))


def run_demo(backend: RemoteBackend) -> DemoReport:
    """Compute the report's figures through ``backend``."""
    d = backend.description
    scalable: Any = backend  # the demo's workers offer scaled and null views
    vocab = d.model.vocab_size or 1 << 20
    with backend.as_base() as base:
        base_lp = base.logprob_of_many(PROMPTS)
        base_dists = base.next_token_dist_many([p for p, _ in PROMPTS], top_k=vocab)
    with backend.as_finetuned() as ft:
        ft_lp = ft.logprob_of_many(PROMPTS)
        ft_dists = ft.next_token_dist_many([p for p, _ in PROMPTS], top_k=vocab)
    rows = [
        PromptRow(p, c, b, f, _kl(fd, bd))
        for (p, c), b, f, fd, bd in zip(PROMPTS, base_lp, ft_lp, ft_dists, base_dists, strict=True)
    ]
    adapter_kl = float(np.mean([r.kl_ft_base for r in rows]))
    ablation = [
        (lam, _mean_kl(backend, lambda lam=lam: scalable.as_scaled_adapter(lam), base_dists, vocab))
        for lam in LAMBDAS
    ]
    null_kls = [
        _mean_kl(backend, lambda s=s: scalable.as_null_adapter(s), base_dists, vocab)
        for s in NULL_SEEDS
    ]
    spread = float(np.std(null_kls, ddof=1)) or math.inf
    z = (adapter_kl - float(np.mean(null_kls))) / spread
    worker = {
        "kind": d.worker_kind,
        "pid": d.runtime.pid,
        "runtime": d.runtime.runtime,
        "executable": d.runtime.executable,
        "protocols": list(d.capabilities.protocols),
        "frameworks": dict(d.framework_versions),
        "device": d.model.device,
        "dtype": d.model.dtype,
        "vocab_size": d.model.vocab_size,
    }
    return DemoReport(worker, rows, ablation, null_kls, adapter_kl, z)


def hf_worker(python: str | None) -> WorkerOptions:
    """``--python``, else the host config's hf section, else ``DEMO_ENV``; env resolved."""
    if python is not None:
        return WorkerOptions(python=python)
    if "hf" in config.configured_kinds():
        options = config.worker_options("hf")
    else:
        options = WorkerOptions(environment=DEMO_ENV)
    if options.environment is not None:
        with step(f"preparing the hf worker's environment {options.environment.name!r}"):
            options = replace(options, python=str(envs.ensure(options.environment)))
    return options


def open_backend(kind: str, python: str | None) -> RemoteBackend:
    if kind == "dummy":
        with step("starting the dummy worker"):
            return swayhost.spawn(ModelSpec(kind="dummy", base="toy"))
    worker = hf_worker(python)
    with step("building the tiny model (once; then reused from the cache)"):
        paths = tiny_model_paths(worker.python or sys.executable)
    spec = ModelSpec(
        kind="hf",
        base=paths["base_dir"],
        adapter=Path(paths["adapter_dir"]),
        dtype="fp32",
        device="cpu",
        worker=worker,
    )
    with step("starting the hf worker and loading the model"):
        return swayhost.build(spec)


def render(report: DemoReport) -> None:
    from rich.console import Console

    console = Console()
    w = report.worker
    console.print(
        f"[bold]Worker[/] {w['kind']} (pid {w['pid']}, {w['runtime']}, "
        f"{w['device']}/{w['dtype']}, vocab {w['vocab_size']})"
    )
    console.print(f"  interpreter: {w['executable']}")
    console.print("  protocols: " + ", ".join(w["protocols"]))
    console.print(
        "  frameworks: " + ", ".join(f"{k} {v}" for k, v in sorted(w["frameworks"].items()))
    )
    prompts = table(
        "Base vs fine-tuned, per prompt",
        *("prompt", "completion", "base logprob", "ft logprob", "Δ", "KL(ft‖base)"),
    )
    for r in report.prompts:
        prompts.add_row(
            r.prompt,
            r.completion,
            f"{r.base_logprob:.3f}",
            f"{r.ft_logprob:.3f}",
            f"{r.ft_logprob - r.base_logprob:+.3f}",
            f"{r.kl_ft_base:.4f}",
        )
    console.print(prompts)
    curve = table("Ablation: mean KL(scaled(lam)‖base)", "lam", "mean KL", "")
    top = max(k for _, k in report.ablation) or 1.0
    for lam, kl in report.ablation:
        curve.add_row(f"{lam:.2f}", f"{kl:.5f}", "█" * round(30 * kl / top))
    console.print(curve)
    console.print(
        f"Adapter mean KL {report.adapter_kl:.5f} vs null adapters "
        f"{np.mean(report.null_kls):.5f} ± {np.std(report.null_kls, ddof=1):.5f} "
        f"(n={len(report.null_kls)}): [bold]z = {report.z_score:+.1f}[/]"
    )


def main(kind: str, python: str | None, as_json: bool) -> int:
    with (
        open_backend(kind, python) as backend,
        step("scoring base, fine-tuned, scaled and null views"),
    ):
        report = run_demo(backend)
    if as_json:
        print(json.dumps(asdict(report), indent=2))
    else:
        render(report)
    return 0
