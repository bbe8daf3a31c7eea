"""One evaluation, two HF workers, two transformers majors, each in its own provisioned env.

The host (a subprocess that must never import torch) declares two envs that
layer on the project's venv (CPU torch 2.13.0, peft): one pins transformers
4.57.6, the other 5.24.0. It starts both workers at once on the same tiny
model and adapter, scores the same inputs through both in every view, and
hands back what each worker reports in Describe. Their numbers must agree to
fp32 noise. A third worker, in the transformers 4 env, is given a tokenizer
saved the transformers 5 way (``TokenizersBackend``) and must say exactly
that. Then: building the envs again is a cache hit, and ``gc`` frees them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from swayhost.paths import CACHE_ENV
from swayworker.hf.tiny import TinyModel

from tests.test_host_is_light import HEAVY

pytestmark = pytest.mark.slow

VERSIONS = ("4.57.6", "5.24.0")
TOLERANCE = 1e-4
"""Two transformers majors on one torch: fp32 noise at most (identical, so far)."""

HOST = """
import json, sys, time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
import swayhost
from swayhost.envs import EnvSpec, provision

base, adapter, tf5_tokenizer_base, versions = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
PAIRS = [("The river ran", " slowly past the mill"), ("In the town", " there was a library"),
         ("The lighthouse keeper of Quillon Bay", " counts seventeen gulls")]
TEXTS = [p + c for p, c in PAIRS] + ["a"]
PROMPTS = [p for p, _ in PAIRS] + [""]
specs = {v: EnvSpec(requirements=(f"transformers=={v}",), inherit=True, name=f"tf-{v}")
         for v in versions}
out = {"builds": {}, "hits": {}, "workers": {}, "trap": ""}
for v, spec in specs.items():
    done = provision(spec)
    out["builds"][v] = {"built": done.built, "seconds": done.seconds, "digest": done.env.digest}

def start(v, model_base):
    worker = swayhost.WorkerOptions(environment=specs[v], name=f"hf-{v}")
    spec = swayhost.ModelSpec(kind="hf", base=model_base, adapter=Path(adapter), dtype="fp32",
                              device="cpu", worker=worker)
    return swayhost.build(spec)

def trap():
    try:
        start(versions[0], tf5_tokenizer_base).close()
    except ValueError as exc:
        return str(exc)
    return "loaded"

def score(backend):
    views = {"base": backend.as_base, "ft": backend.as_finetuned,
             "half": lambda: backend.as_scaled_adapter(0.5)}
    vocab = backend.description.model.vocab_size
    result = {}
    for name, enter in views.items():
        with enter() as view:
            rolling = view.rolling_logprob_many(TEXTS)
            dists = view.next_token_dist_many(PROMPTS, top_k=vocab)
            result[name] = {
                "logprob_of": [float(x) for x in view.logprob_of_many(PAIRS)],
                "rolling_ids": [r.token_ids.tolist() for r in rolling],
                "rolling": [r.logprobs.tolist() for r in rolling],
                "dist_ids": [d.token_ids.tolist() for d in dists],
                "dist": [d.logprobs.tolist() for d in dists],
            }
    return result

with ThreadPoolExecutor(3) as pool:
    started = [pool.submit(start, v, base) for v in versions]
    trapped = pool.submit(trap)
    backends = dict(zip(versions, (f.result() for f in started)))
    out["trap"] = trapped.result()
try:
    for v, backend in backends.items():
        d = backend.description
        out["workers"][v] = {"versions": dict(d.framework_versions),
                             "executable": d.runtime.executable, "pid": d.runtime.pid,
                             "scores": score(backend)}
finally:
    for backend in backends.values():
        backend.close()
for v, spec in specs.items():
    done = provision(spec)
    out["hits"][v] = {"built": done.built, "seconds": done.seconds}
out["heavy"] = sorted(m for m in sys.modules if m.split(".")[0] in HEAVY)
print(json.dumps(out))
"""


def run_host(tiny: TinyModel, trap_base: Path) -> dict[str, Any]:
    program = f"HEAVY = {HEAVY!r}\n{HOST}"
    argv = [sys.executable, "-c", program, str(tiny.base_dir), str(tiny.adapter_dir)]
    out = subprocess.run(
        [*argv, str(trap_base), *VERSIONS],
        capture_output=True,
        text=True,
        timeout=280,
        env=os.environ.copy(),
    )
    assert out.returncode == 0, out.stderr[-4000:]
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def tokenizer_saved_by_transformers_5(tiny: TinyModel, folder: Path) -> Path:
    """The tiny base, its tokenizer declared the way transformers 5 saves it."""
    copy = folder / "tf5-tokenizer-base"
    shutil.copytree(tiny.base_dir, copy)
    config_path = copy / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["tokenizer_class"] = "TokenizersBackend"
    config_path.write_text(json.dumps(config))
    return copy


def max_difference(a: Any, b: Any) -> float:
    """Largest |a - b| over nested lists of floats (ragged across items)."""
    if isinstance(a, list):
        return max((max_difference(x, y) for x, y in zip(a, b, strict=True)), default=0.0)
    return float(np.abs(np.float64(a) - np.float64(b)))


def test_two_transformers_majors_in_one_evaluation(
    tiny_model: TinyModel, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(cache))
    result = run_host(tiny_model, tokenizer_saved_by_transformers_5(tiny_model, tmp_path))

    assert result["heavy"] == [], f"the host imported {result['heavy']}"
    old, new = (result["workers"][v] for v in VERSIONS)
    for version, worker in zip(VERSIONS, (old, new), strict=True):
        assert worker["versions"]["transformers"] == version
        assert worker["versions"]["torch"].startswith("2.13.0")
        digest = result["builds"][version]["digest"]
        assert worker["executable"] == str(cache / "envs" / digest / "venv" / "bin" / "python")
    assert old["pid"] != new["pid"]

    differences = {}
    for view, scores in old["scores"].items():
        other = new["scores"][view]
        assert scores["rolling_ids"] == other["rolling_ids"], "the two majors tokenize alike"
        assert scores["dist_ids"][0][:5] == other["dist_ids"][0][:5]
        for key in ("logprob_of", "rolling", "dist"):
            differences[f"{view}.{key}"] = max_difference(scores[key], other[key])
    print("\nmax |transformers 4.57.6 - 5.24.0| per view and operation:")
    for key, value in differences.items():
        print(f"  {key:16s} {value:.3g}")
    assert max(differences.values()) <= TOLERANCE, differences

    assert "saved by transformers 5 (tokenizer_class: TokenizersBackend)" in result["trap"]
    assert "transformers 4.57.6 cannot load" in result["trap"]
    assert "PreTrainedTokenizerFast" in result["trap"]

    for version in VERSIONS:
        build, hit = result["builds"][version], result["hits"][version]
        print(
            f"env transformers=={version}: built in {build['seconds']:.2f}s, "
            f"cache hit in {hit['seconds'] * 1000:.0f} ms"
        )
        assert build["built"] and not hit["built"] and hit["seconds"] < 1.0

    gc = subprocess.run(
        [sys.executable, "-m", "swayhost", "env", "gc", "--all", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    freed = json.loads(gc.stdout)
    removed = {e["digest"] for e in freed["envs"] if e["removed"]}
    assert removed == {result["builds"][v]["digest"] for v in VERSIONS}
    assert freed["freed_bytes"] > 10_000_000, "the transformers 4 env holds tens of MB"
    print(f"gc freed {freed['freed_bytes'] / 2**20:.1f} MiB")
    assert not any((cache / "envs").glob("*/venv"))
