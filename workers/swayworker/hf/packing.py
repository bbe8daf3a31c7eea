"""Several short sequences in one row of a forward pass, isolated by an attention mask.

A padded batch costs every row the longest sequence's length: sixteen texts
of 8 to 40 tokens run 640 positions for about 380 real ones, and on a CPU the
cost of a pass grows with its positions. Packing puts shorter sequences side
by side in one row (first fit, longest first, rows as wide as the longest
sequence), restarts the position ids at each sequence and passes a 4D mask
that lets a token see only the earlier tokens of its own sequence. Every
token then sees exactly the positions and context it sees alone; only the
reduction order inside the kernels differs, as with padding.

The mask is additive (0 to attend, the dtype's minimum not to), the form that
both eager and SDPA attention take as it is. Whether a model honours a custom
mask and explicit position ids is the model's own code, so the backend checks
a packed pass against a padded one once per model, on a probe from its first
packable batch, and packs only if they agree (``swayworker.hf.backend``).
Nothing here imports torch at module import.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Span:
    """Where one sequence landed: its row and its first and past-last columns."""

    row: int
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class Packed:
    """The tensors of one packed pass, and where each input sequence sits in it."""

    input_ids: Any
    position_ids: Any
    attention_mask: Any
    spans: list[Span]


def pack_rows(lengths: Sequence[int]) -> list[list[int]]:
    """Indices of ``lengths`` grouped into rows no wider than the longest one.

    First fit, longest first: each sequence goes into the first row with
    room for it. Every row keeps its sequences longest first.
    """
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    width = lengths[order[0]] if order else 0
    rows: list[list[int]] = []
    used: list[int] = []
    for index in order:
        for row, filled in enumerate(used):
            if filled + lengths[index] <= width:
                rows[row].append(index)
                used[row] += lengths[index]
                break
        else:
            rows.append([index])
            used.append(lengths[index])
    return rows


def packed_inputs(
    batch: Sequence[list[int]], pad_token_id: int, torch: Any, dtype: Any, device: str
) -> Packed:
    """``batch`` packed into rows, with positions restarting per sequence and its mask.

    Padding at the end of a row forms a segment of its own, so no query row
    of the mask is empty (an all-masked softmax row is undefined in some
    kernels); nothing reads the padding's logits.
    """
    rows = pack_rows([len(ids) for ids in batch])
    width = max(len(ids) for ids in batch)
    spans: list[Span | None] = [None] * len(batch)
    input_rows, position_rows, segment_rows = [], [], []
    for row, members in enumerate(rows):
        tokens: list[int] = []
        positions: list[int] = []
        segments: list[int] = []
        for segment, index in enumerate(members):
            ids = batch[index]
            spans[index] = Span(row, len(tokens), len(tokens) + len(ids))
            tokens += ids
            positions += range(len(ids))
            segments += [segment] * len(ids)
        pad = width - len(tokens)
        input_rows.append(tokens + [pad_token_id] * pad)
        position_rows.append(positions + list(range(pad)))
        segment_rows.append(segments + [len(members)] * pad)
    segment = torch.tensor(segment_rows, device=device)
    causal = torch.ones(width, width, dtype=torch.bool, device=device).tril_()
    allowed = (segment[:, :, None] == segment[:, None, :]) & causal
    mask = torch.zeros(allowed.shape, dtype=dtype, device=device)
    mask.masked_fill_(~allowed, torch.finfo(dtype).min)
    return Packed(
        input_ids=torch.tensor(input_rows, dtype=torch.long, device=device),
        position_ids=torch.tensor(position_rows, dtype=torch.long, device=device),
        attention_mask=mask[:, None],
        spans=[span for span in spans if span is not None],
    )
