"""A worker in another language: workers/node (a character n-gram model in Node.js).

It is spawned like any worker (``WorkerOptions(command=("node", ".../worker.js"))``)
and then is an ordinary sway backend: its views satisfy sway's protocols,
its adapter measurably changes the model, scaled(0) and scaled(1) are base
and ft exactly, and sway's own ``sway run`` evaluates it end to end. Its
conformance is in test_conformance.py.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sysconfig
from pathlib import Path

import pytest
import swayhost
import yaml
from dlm_sway.core.errors import ProbeError, SpecValidationError
from dlm_sway.core.scoring import (
    DifferentialBackend,
    NullCalibratedBackend,
    PreflightCheckable,
    ScalableDifferentialBackend,
)
from swayworker.protocol import MAGIC_COOKIE_VALUE

from tests.helpers import plugin_pythonpath, require_node
from tests.plugins.node_backend import NODE_WORKER, node_spec

SWAY = Path(sysconfig.get_path("scripts")) / "sway"
PROMPT, COMPLETION = "Set the main", " sail at dawn"


@pytest.fixture(scope="module")
def node() -> swayhost.RemoteBackend:
    require_node()
    backend = swayhost.spawn(node_spec())
    yield backend
    backend.close()


def score(enter: object) -> tuple[float, bytes]:
    """(logprob_of, next-token logprob bytes) of the module's prompt in one view."""
    with enter() as view:  # type: ignore[operator]
        dist = view.next_token_dist(PROMPT, top_k=16)
        return view.logprob_of(PROMPT, COMPLETION), dist.logprobs.tobytes()


def test_it_is_an_ordinary_sway_backend(node: swayhost.RemoteBackend) -> None:
    assert isinstance(node, DifferentialBackend)
    assert isinstance(node, ScalableDifferentialBackend)
    assert isinstance(node, NullCalibratedBackend)
    assert isinstance(node, PreflightCheckable)
    assert node.description.runtime.language == "node"
    assert node.description.model.vocab_size == 97
    assert node.preflight_finite_check() == (True, "")


def test_differential_evaluation(node: swayhost.RemoteBackend) -> None:
    base, ft = score(node.as_base), score(node.as_finetuned)
    # The adapter was trained on a ship's log: it makes " sail" likelier here.
    assert ft[0] > base[0] + 1.0
    assert ft[1] != base[1]
    assert score(lambda: node.as_scaled_adapter(0.0)) == base
    assert score(lambda: node.as_scaled_adapter(1.0)) == ft
    half = score(lambda: node.as_scaled_adapter(0.5))[0]
    assert base[0] < half < ft[0]


def test_null_views_are_seeded_and_grow_with_their_scale(node: swayhost.RemoteBackend) -> None:
    def shift(seed: int, init_scale: float = 0.02, rank_scale: float = 1.0) -> float:
        """Total variation between the base and a null view's next-token distributions."""
        with node.as_base() as view:
            base = view.next_token_dist(PROMPT, top_k=97)
        with node.as_null_adapter(seed, init_scale=init_scale, rank_scale=rank_scale) as view:
            null = view.next_token_dist(PROMPT, top_k=97)
        p = dict(zip(base.token_ids.tolist(), base.logprobs.tolist(), strict=True))
        q = dict(zip(null.token_ids.tolist(), null.logprobs.tolist(), strict=True))
        return 0.5 * sum(abs(math.exp(p[i]) - math.exp(q[i])) for i in p)

    assert shift(1) == shift(1)
    assert shift(1) != shift(2)
    assert 0 < shift(1) < shift(1, rank_scale=4.0) < shift(1, init_scale=0.5)
    assert shift(1, init_scale=0.0) == 0.0


def test_generation_is_greedy_or_seeded(node: swayhost.RemoteBackend) -> None:
    with node.as_finetuned() as view:
        greedy = view.generate(PROMPT, max_new_tokens=12)
        assert greedy == view.generate(PROMPT, max_new_tokens=12)
        sampled = [
            view.generate(PROMPT, max_new_tokens=12, temperature=1.0, seed=s) for s in (1, 1, 2)
        ]
    assert len(greedy) == 12
    assert sampled[0] == sampled[1] != sampled[2]


def test_an_adapter_trained_on_a_file(node: swayhost.RemoteBackend, tmp_path: Path) -> None:
    recipes = tmp_path / "recipes.txt"
    recipes.write_text("Stir the soup slowly and add a pinch of salt.\n" * 30, encoding="utf-8")
    with swayhost.spawn(node_spec(adapter=recipes)) as cook:
        assert cook.cache_identity() != node.cache_identity()
        assert cook.description.model.adapter_path == str(recipes)
        with cook.as_base() as view:
            base = view.logprob_of("Stir the", " soup")
        with cook.as_finetuned() as view:
            ft = view.logprob_of("Stir the", " soup")
    assert ft > base + 2.0


def test_its_errors_are_the_ones_sway_raises(node: swayhost.RemoteBackend) -> None:
    with node.as_base() as view:
        with pytest.raises(ProbeError) as info:
            view.logprob_of(PROMPT, "")
        assert str(info.value) == (
            f"probe 'logprob_of': completion tokenized to zero tokens (prompt={PROMPT!r},"
            " completion='')"
        )
        assert info.value.probe == "logprob_of"
        with pytest.raises(ValueError, match="top_k must be a positive integer"):
            view.next_token_dist(PROMPT, top_k=0)
        with pytest.raises(ValueError, match="accepts at most 4096"):
            view.rolling_logprob("x" * 5000)
    with pytest.raises(SpecValidationError, match="unknown option"):
        swayhost.spawn(node_spec(colour="red"))


def test_its_cookie_is_the_hosts() -> None:
    source = NODE_WORKER.read_text(encoding="utf-8")
    match = re.search(r"MAGIC_COOKIE_VALUE = '([0-9a-f]+)'", source)
    assert match is not None and match.group(1) == MAGIC_COOKIE_VALUE


def test_sway_run_evaluates_the_node_worker(tmp_path: Path) -> None:
    """sway's CLI builds ``node_backend:NodeNgram`` (kind: custom) and runs its probes."""
    require_node()
    model = {"kind": "custom", "base": "builtin", "entry_point": "node_backend:NodeNgram"}
    suite = {
        "version": 1,
        "models": {"base": model, "ft": model},
        "defaults": {"seed": 0, "top_k": 16},
        "suite": [
            {"name": "baseline", "kind": "null_adapter", "runs": 3, "cache": False},
            {"name": "shift", "kind": "delta_kl", "prompts": ["The river ran", PROMPT]},
            {
                "name": "ablation",
                "kind": "adapter_ablation",
                "prompts": ["The sky is"],
                "lambdas": [0.0, 0.5, 1.0, 1.25],
            },
        ],
    }
    (tmp_path / "sway.yaml").write_text(yaml.safe_dump(suite), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": plugin_pythonpath(), "XDG_CACHE_HOME": str(tmp_path)}
    out = subprocess.run(
        [str(SWAY), "run", "sway.yaml", "--json", "report.json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    probes = {p["name"]: p for p in report["probes"]}
    assert {p["verdict"] for p in probes.values()} <= {"pass", "fail", "warn"}, probes
    # The real adapter moves the model far more than seeded null adapters do.
    assert probes["shift"]["raw"] > 0 and probes["shift"]["z_score"] > 3
    assert probes["ablation"]["raw"] > 0.9  # the effect grows smoothly with lam
