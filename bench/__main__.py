"""``python -m bench`` (``make bench``): measure, print, write ``bench/results/bench.md``."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from bench.measure import BenchConfig, measure
from bench.report import print_rich, to_markdown

RESULTS = Path(__file__).resolve().parent / "results" / "bench.md"


def main(argv: list[str] | None = None) -> int:
    d = BenchConfig()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--rounds", type=int, default=d.rounds)
    parser.add_argument("--batch", type=int, default=d.batch, help="texts per round and op")
    parser.add_argument("--block", type=int, default=d.block, help="unary calls per block")
    parser.add_argument("--startup-reps", type=int, default=d.startup_reps)
    parser.add_argument("--import-reps", type=int, default=d.import_reps)
    parser.add_argument(
        "--threads", type=int, default=d.threads, help="torch threads, both sides (0: default)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    # Quiet the model-loading chatter (torch and transformers are imported
    # later, inside measure); the worker inherits the environment too.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    warnings.filterwarnings("ignore", category=FutureWarning)

    from swayhost.demo import tiny_model_paths

    paths = tiny_model_paths(sys.executable)
    config = BenchConfig(
        rounds=args.rounds,
        batch=args.batch,
        block=args.block,
        startup_reps=args.startup_reps,
        import_reps=args.import_reps,
        threads=args.threads,
    )
    report = measure(paths["base_dir"], Path(paths["adapter_dir"]), config)
    print_rich(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    tmp.write_text(to_markdown(report), encoding="utf-8")
    tmp.replace(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
