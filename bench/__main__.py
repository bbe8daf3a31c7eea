"""``python -m bench`` (``make bench``): measure, print, write ``bench/results/bench.{md,png}``."""

from __future__ import annotations

import argparse
import os
import warnings
from dataclasses import replace
from pathlib import Path

from bench.config import MODELS, BenchConfig, quick_config
from bench.figures import Report
from bench.models import BenchModel

RESULTS = Path(__file__).resolve().parent / "results"


def default_out(threads: int) -> Path:
    """``bench.md`` at torch's default threads; ``bench-threads-N.md`` for ``--threads N``."""
    return RESULTS / ("bench.md" if threads == 0 else f"bench-threads-{threads}.md")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: the tiny model, every sweep, few repetitions (about a minute)",
    )
    parser.add_argument("--model", choices=[*MODELS, "all"], default="all")
    parser.add_argument("--rounds", type=int, help="rounds of the per-op table (every model)")
    parser.add_argument("--batch", type=int, help="texts per round and op in the per-op table")
    parser.add_argument("--block", type=int, help="unary calls per interleaved block")
    parser.add_argument("--sweep-rounds", type=int, help="rounds per sweep point")
    parser.add_argument("--startup-reps", type=int, help="host backends built per model")
    parser.add_argument("--ready-reps", type=int, help="workers started without a model")
    parser.add_argument("--import-reps", type=int)
    parser.add_argument(
        "--threads",
        type=int,
        help="torch threads, both sides (default 0: torch's own default, as users run it)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="the Markdown file; the PNG goes beside it (default: bench/results/bench.md,"
        " or bench-threads-N.md with --threads N)",
    )
    return parser


def config_from(args: argparse.Namespace) -> BenchConfig:
    """The run the flags ask for: full or ``--quick``, one model or all, plans overridden."""
    config = quick_config() if args.quick else BenchConfig()
    if args.model != "all":
        plans = config.plans if args.model in config.plans else BenchConfig().plans
        config = replace(config, models=(args.model,), plans=plans)
    config = config.overriding(
        rounds=args.rounds,
        batch=args.batch,
        block=args.block,
        sweep_rounds=args.sweep_rounds,
        startup_reps=args.startup_reps,
    )
    if args.ready_reps is not None:
        config = replace(config, ready_reps=args.ready_reps)
    if args.import_reps is not None:
        config = replace(config, import_reps=args.import_reps)
    if args.threads is not None:
        config = replace(config, threads=args.threads)
    return config


def models_for(config: BenchConfig) -> list[BenchModel]:
    """Build (or reuse) the models the config names; the ~50M one reuses tiny's tokenizer."""
    from bench.models import medium_model, tiny_model

    tiny = tiny_model()
    built = {"tiny": tiny}
    if "50m" in config.models:
        built["50m"] = medium_model(tiny.base_dir)
    return [built[name] for name in config.models]


def write_outputs(report: Report, markdown: Path) -> Path:
    """The Markdown at ``markdown`` and the PNG beside it, each written atomically."""
    from bench.plot import write_plot
    from bench.report import to_markdown

    markdown.parent.mkdir(parents=True, exist_ok=True)
    png = markdown.with_suffix(".png")
    write_plot(report, png)
    tmp = markdown.with_name(markdown.name + ".tmp")
    tmp.write_text(to_markdown(report, plot_name=png.name), encoding="utf-8")
    tmp.replace(markdown)
    return png


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    config = config_from(args)

    # Quiet the model-loading chatter (torch and transformers are imported
    # later); the workers inherit the environment too.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)

    from bench.progress import rich_steps
    from bench.report import print_rich
    from bench.run import run

    with rich_steps() as steps:
        with steps.phase("build or reuse the models", 1):
            models = models_for(config)
        report = run(config, models, steps)
    print_rich(report)
    out = args.out or default_out(config.threads)
    png = write_outputs(report, out)
    print(f"wrote {out} and {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
