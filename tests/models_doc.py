"""``docs/models.md`` from a test run: what each worker did on each matrix cell.

``tests/test_model_matrix.py`` records every outcome here (equal with its
worst difference, or refused with the worker's own message) and, with
``SWAYHOST_MODELS_DOC`` set, renders this table into that file. The
document is therefore a test result, never an edit by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.model_matrix import ARCHS, CELLS, VARIANTS, Cell


@dataclass
class Record:
    """Outcomes keyed by (worker, cell id, dtype)."""

    outcomes: dict[tuple[str, str, str], str] = field(default_factory=dict)
    worst: dict[tuple[str, str], float] = field(default_factory=dict)

    def equal(
        self, worker: str, cell: Cell, dtype: str, worst: float, *, process: bool = True
    ) -> None:
        where = "" if process else ", backend in process"
        self.outcomes[(worker, cell.id, dtype)] = f"equal (max diff {worst:.1e}{where})"
        key = (worker, dtype)
        self.worst[key] = max(self.worst.get(key, 0.0), worst)

    def refused(self, worker: str, cell: Cell, dtype: str, message: str) -> None:
        reason = message.split("\n")[0].replace("|", "/")
        self.outcomes[(worker, cell.id, dtype)] = f"refused: {reason}"


HEADER = """\
# Models and adapters the workers serve

Produced by `SWAYHOST_MODELS_DOC=docs/models.md pytest tests/test_model_matrix.py`
from the model matrix (`tests/model_matrix.py`): tiny random models of each
architecture saved by transformers 5, PEFT adapters trained a few steps.
*equal* means every operation on the base, fine-tuned, scaled (and, for the
HF worker, null) views agreed with in-process dlm-sway (HF worker: within
1e-6 in fp32, to the bit in bf16/fp16) or with the HF results (MLX worker:
within 1e-4 in fp32, within the dtype's noise in bf16/fp16, scores only),
with the worst difference seen; *refused* means the
worker declined the cell at Load with the message shown. A cell not run is
marked "not run".
"""


def render(record: Record) -> str:
    columns = [("hf", "fp32"), ("hf", "bf16"), ("hf", "fp16"), ("mlx", "fp32")]
    columns += [("mlx", "bf16"), ("mlx", "fp16")]
    names = " | ".join(f"{w.upper()} {d}" for w, d in columns)
    lines = [HEADER, f"| architecture | adapter | {names} |"]
    lines.append("|---|---|" + "---|" * len(columns))
    for cell in CELLS:
        row = [cell.arch, _variant(cell)]
        for worker, dtype in columns:
            row.append(record.outcomes.get((worker, cell.id, dtype), "not run"))
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "## Worst difference per worker and dtype", ""]
    lines += ["| worker | dtype | worst abs logprob diff |", "|---|---|---|"]
    for (worker, dtype), value in sorted(record.worst.items()):
        lines.append(f"| {worker} | {dtype} | {value:.1e} |")
    lines += ["", "## Architectures", ""]
    for arch in ARCHS.values():
        lines.append(f"- `{arch.name}`: tokenizer {arch.tokenizer}, tied embeddings: {arch.tied}")
    return "\n".join(lines) + "\n"


def _variant(cell: Cell) -> str:
    variant = VARIANTS[cell.variant]
    return f"{variant.name} ({variant.note})" if variant.note else variant.name
