"""One real-size model: Qwen2-0.5B's shape (494M parameters, 151,936 vocabulary), random weights.

The matrix proves breadth on tiny shapes; this proves the HF worker at the
size users fine-tune: parity with in-process sway on a handful of calls on
the base and fine-tuned views (ids and texts equal, logprobs within 1e-6,
batched calls within 1e-4). The model is built once into the host's cache
folder (about 2 GB; a few minutes the first time) and reused by later runs.
"""

from __future__ import annotations

import pytest
import swayhost
from swayhost import ModelSpec, WorkerOptions
from swayhost.paths import cache_dir

from tests.matrix_scoring import compare, score
from tests.model_matrix import BIG_VOCAB, build_real_size

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]

sway_hf = pytest.importorskip("dlm_sway.backends.hf")
from dlm_sway.core.model import ModelSpec as SwaySpec  # noqa: E402

VIEWS = ("base", "ft")


def test_a_qwen2_05b_shaped_model_matches_sway_through_the_worker() -> None:
    built = build_real_size(cache_dir() / "model-matrix")
    spec = SwaySpec(
        kind="hf", base=str(built.base_dir), adapter=built.adapter_dir, dtype="fp32", device="cpu"
    )
    reference = sway_hf.HuggingFaceDifferentialBackend(
        base_spec=spec, adapter_path=built.adapter_dir
    )
    try:
        want = score(reference, VIEWS)
    finally:
        reference.close()
    host_spec = ModelSpec(
        kind="hf",
        base=str(built.base_dir),
        adapter=built.adapter_dir,
        dtype="fp32",
        device="cpu",
        worker=WorkerOptions(startup_timeout=600),
    )
    with swayhost.build(host_spec) as backend:
        assert backend.description.model.vocab_size == BIG_VOCAB
        got = score(backend, VIEWS)
    compare(got, want, atol=1e-6, views=VIEWS, batch_atol=1e-4)
    base, ft = want.views["base"], want.views["ft"]
    assert base.logprob_of != ft.logprob_of, "the adapter moves the model"
