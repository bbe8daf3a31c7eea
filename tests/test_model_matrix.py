"""The model matrix: every architecture and adapter variant, HF worker and MLX worker.

For each cell of ``tests.model_matrix.CELLS`` (and half-precision dtypes on
a few), sway's own in-process HF backend scores a fixed set of inputs on
every view; then

* the HF worker must give the same results: ids, texts and tail states
  equal, logprobs within 1e-6 in fp32 and to the bit in bf16/fp16 (unary
  calls run sway's exact forward pass), and its batched ``*_many`` calls
  (padded forward passes) within 1e-5 (fp32) or the dtype's noise. One cell
  per architecture runs through a real worker process behind the host (the
  wire is the same for every cell); the others run the worker's backend in
  this process, which keeps the matrix inside its time budget (a worker
  process costs a torch import);
* the MLX worker (its own env, fp32) must give the same results within 1e-4
  on the base, fine-tuned and scaled views, batched calls included (its
  null views draw from MLX's generator, so only their restore is checked),
  or refuse the cell at Load with a message that names what it cannot do and
  points to the HF worker; in bf16/fp16 (one cell) its scores must be within
  the dtype's noise of sway's in the same dtype.

Each outcome is recorded; with ``SWAYHOST_MODELS_DOC=docs/models.md`` set,
the run writes that table (``tests/models_doc.py``), so the documented
matrix is what a test run found.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest
import swayhost
from swayhost import ModelSpec, WorkerOptions

from tests import models_doc
from tests.matrix_scoring import Scorecard, compare, score
from tests.model_matrix import CELLS, Built, Cell, build_cell

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

sway_hf = pytest.importorskip("dlm_sway.backends.hf")
from dlm_sway.core.model import ModelSpec as SwaySpec  # noqa: E402

TOLERANCE = {"fp32": 1e-6, "bf16": 0.0, "fp16": 0.0}
"""HF worker vs sway. Unary calls run sway's exact forward pass and math, so
half precision too must agree to the bit (0.0); fp32 is held to 1e-6."""
BATCH_TOLERANCE = {"fp32": 1e-5, "bf16": 0.1, "fp16": 0.02}
"""Padded batches change kernel reduction order: float noise of the dtype
(bf16 keeps 8 mantissa bits, fp16 11) on logprobs of magnitude ~6."""
MLX_TOLERANCE = 1e-4

HALF_CELLS = (Cell("llama", "lora"), Cell("qwen2", "lora"), Cell("gemma2", "lora"))
PROCESS_CELLS = {
    next(c for c in CELLS if c.arch == arch) for arch in dict.fromkeys(c.arch for c in CELLS)
}
"""The first cell of each architecture: run through a worker process."""
HF_CASES = [(cell, "fp32") for cell in CELLS] + [
    (cell, dtype) for cell in HALF_CELLS for dtype in ("bf16", "fp16")
]

MLX_REFUSES: dict[str, str] = {
    # every bias of the base trained (saved under the base's own names): not converted
    "qwen2/all-bias": "bias='all'",
}
"""Cell id -> a word the MLX worker's refusal must contain; every other cell must be equal."""


@pytest.fixture(scope="session")
def matrix_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("matrix")


@pytest.fixture(scope="session")
def record() -> Iterator[models_doc.Record]:
    rec = models_doc.Record()
    yield rec
    target = os.environ.get("SWAYHOST_MODELS_DOC")
    if target:
        Path(target).write_text(models_doc.render(rec))


@cache
def _reference(root: Path, cell: Cell, dtype: str) -> tuple[Built, Scorecard]:
    """sway's scorecard for a cell, computed once per run (both workers compare to it)."""
    built = build_cell(root, cell)
    spec = SwaySpec(
        kind="hf", base=str(built.base_dir), adapter=built.adapter_dir, dtype=dtype, device="cpu"
    )
    backend = sway_hf.HuggingFaceDifferentialBackend(base_spec=spec, adapter_path=built.adapter_dir)
    try:
        return built, score(backend)
    finally:
        backend.close()


def _spec(kind: str, built: Built, dtype: str, worker: WorkerOptions) -> ModelSpec:
    return ModelSpec(
        kind=kind,
        base=str(built.base_dir),
        adapter=built.adapter_dir,
        dtype=dtype,
        device="cpu",
        worker=worker,
    )


@pytest.mark.parametrize(("cell", "dtype"), HF_CASES, ids=lambda v: getattr(v, "id", v))
def test_hf_worker_equals_sway(
    cell: Cell, dtype: str, matrix_root: Path, record: models_doc.Record
) -> None:
    built, want = _reference(matrix_root, cell, dtype)
    if dtype == "fp32" and cell in PROCESS_CELLS:
        with swayhost.build(_spec("hf", built, dtype, WorkerOptions())) as backend:
            got = score(backend)
            assert backend.description.model.dtype == "float32"
    else:
        from swayworker.hf.backend import HFDifferentialBackend

        local = HFDifferentialBackend(
            base_spec=_spec("hf", built, dtype, WorkerOptions()), adapter_path=built.adapter_dir
        )
        try:
            got = score(local)
        finally:
            local.close()
    worst = compare(got, want, atol=TOLERANCE[dtype], batch_atol=BATCH_TOLERANCE[dtype])
    record.equal("hf", cell, dtype, worst, process=cell in PROCESS_CELLS and dtype == "fp32")


@pytest.mark.parametrize("cell", CELLS, ids=lambda c: c.id)
def test_mlx_worker_equals_hf_or_refuses(
    cell: Cell, matrix_root: Path, mlx_python: Path, record: models_doc.Record, tmp_path: Path
) -> None:
    built, want = _reference(matrix_root, cell, "fp32")
    worker = WorkerOptions(python=str(mlx_python), options={"adapter_cache_dir": str(tmp_path)})
    spec = _spec("mlx", built, "fp32", worker)
    if cell.id in MLX_REFUSES:
        with pytest.raises(ValueError) as refused:
            swayhost.build(spec)
        message = str(refused.value)
        assert MLX_REFUSES[cell.id] in message and "hf worker" in message, message
        record.refused("mlx", cell, "fp32", message.replace(f"{built.adapter_dir}/", ""))
        return
    with swayhost.build(spec) as backend:
        got = score(backend, ("base", "ft", "scaled-0.5"))
        again = score(backend, ("ft",), generate=False)  # after the null view below
        with backend.as_null_adapter(3) as null:
            null.logprob_of(*_first_pair())
        restored = score(backend, ("ft",), generate=False)
    views = ("base", "ft", "scaled-0.5")
    worst = compare(
        got, want, atol=MLX_TOLERANCE, views=views, sampled=False, batch_atol=MLX_TOLERANCE
    )
    compare(restored, again, atol=0.0, views=("ft",))
    record.equal("mlx", cell, "fp32", worst)


MLX_HALF_TOLERANCE = {"bf16": 1e-2, "fp16": 2e-3}
"""MLX vs torch kernels in half precision round each in their own way through
every layer: a few units of the dtype's epsilon on logprobs of order one (bf16:
2^-8 = 3.9e-3, fp16: 2^-11 = 4.9e-4; seen: 4.5e-3 and 3.6e-4). Greedy text may
then differ on a near tie, so only the scores are compared."""


@pytest.mark.parametrize("dtype", ["bf16", "fp16"])
def test_mlx_worker_in_half_precision_is_within_the_dtypes_noise(
    dtype: str, matrix_root: Path, mlx_python: Path, record: models_doc.Record, tmp_path: Path
) -> None:
    cell = HALF_CELLS[0]
    built, want = _reference(matrix_root, cell, dtype)
    worker = WorkerOptions(python=str(mlx_python), options={"adapter_cache_dir": str(tmp_path)})
    with swayhost.build(_spec("mlx", built, dtype, worker)) as backend:
        assert backend.description.model.dtype == {"bf16": "bfloat16", "fp16": "float16"}[dtype]
        got = score(backend, ("base", "ft"), generate=False)
    tolerance = MLX_HALF_TOLERANCE[dtype]
    worst = compare(got, want, atol=tolerance, views=("base", "ft"), sampled=False, greedy=False)
    record.equal("mlx", cell, dtype, worst)


def _first_pair() -> tuple[str, str]:
    from tests.matrix_scoring import PAIRS

    return PAIRS[0]
