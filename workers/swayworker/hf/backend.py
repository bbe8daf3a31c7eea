"""The HuggingFace + PEFT differential backend, rebuilt for the worker.

It behaves like dlm-sway's ``HuggingFaceDifferentialBackend``: one base model
with the LoRA adapter attached once, base and fine-tuned views toggled on the
same weights, the same tokenization calls, forward passes and log-softmax
math (so fp32 numbers match bit for bit), the same scaled and null views, the
same preflight verdicts and the same errors. It is its own code, though, and
adds what the out-of-process worker needs:

* batched view methods (``logprob_of_many`` and friends) that score many
  inputs in padded forward passes, sorted by length to waste little padding
  (rolling ones packed several to a row where the model allows it,
  ``swayworker.hf.packing``), returning one result or exception object per
  input;
* the model facts the worker advertises (vocab size, device, dtype, limits,
  framework versions).

sway's in-process LRU cache and tracer are left out on purpose: the host
caches scored requests itself.

torch, transformers and peft are imported when a backend is built, never at
module import, so the worker SDK can import this module cheaply.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np

from swayworker import preflight
from swayworker.errors import BadSpec
from swayworker.hf.compat import check_dtype_runs
from swayworker.hf.encoding import batch_encoder
from swayworker.hf.packing import pack_rows, packed_inputs
from swayworker.resident import DEFAULT_MAX_RESIDENT, AdapterOf, ResidentAdapters
from swayworker.results import RollingLogprob, TokenDist, probe_error
from swayworker.spec import ModelSpecLike, tokenizer_source
from swayworker.views import AdapterViews, ScorerView, ViewSlot

R = TypeVar("R")
X = TypeVar("X")

logger = logging.getLogger(__name__)

HF_INSTALL_HINT = "pip install 'sway-plugin-host[hf]' (torch, transformers, peft)"

PACKING_TOLERANCE = 1e-4
"""How far (relative and absolute) a packed pass's fp32 logits may sit from the padded
pass's before packing is judged unsafe for a model: reduction order moves them by
about 1e-6; a sequence seeing another's tokens moves them by orders of magnitude more."""

LOCAL_ATTENTION_FIELDS = ("sliding_window", "attention_chunk_size")
"""Config fields that limit how far back a token attends (Mistral, Gemma-2, Phi-3; Llama 4)."""

HF_MAX_BATCH = 64
"""The HF backend's own batch limit: a padded forward pass grows with the longest
prompt, so it stays below the generic ``capabilities.DEFAULT_MAX_BATCH``."""


def _require_hf() -> tuple[Any, Any, Any]:
    """torch, transformers and peft, or an ImportError that says what to install."""
    try:
        import peft
        import torch
        import transformers
    except ImportError as exc:
        raise ImportError(
            f"the hf backend needs torch, transformers and peft ({exc}); {HF_INSTALL_HINT}"
        ) from exc
    return torch, transformers, peft


def _resolve_device(requested: str, torch: Any) -> str:
    """``auto`` picks CUDA, then MPS, then CPU; anything else is used verbatim."""
    if requested != "auto":
        return requested
    if torch.cuda.is_available():
        return "cuda"
    if hasattr(torch.backends, "mps") and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _resolve_dtype(requested: str, device: str, torch: Any) -> Any:
    """sway's table: explicit names map directly; ``auto`` depends on the device."""
    explicit = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
    if requested in explicit:
        return explicit[requested]
    if device == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if device == "mps":
        return torch.float16
    return torch.float32


# --- batched scoring -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Job(Generic[R]):
    """One input that needs a forward pass over ``ids``.

    ``finish`` turns the item's logits into the item's result: shaped
    ``(1, len(ids), V)`` with the padding cut away, or, for a job with a
    ``tail``, only the logits of its last ``tail`` positions, ``(1, tail, V)``
    (1 for a next-token job; a completion's length + 1 for ``logprob_of``).
    """

    ids: list[int]
    finish: Callable[[Any], R]
    tail: int = 0
    """How many final positions' logits ``finish`` reads (0: every position)."""
    top_k: int = 0
    """A next-token job's ``top_k`` (0: another operation). A chunk of several
    next-token jobs (one ``top_k``: a batch has one) is finished all at once."""


Encoded = Mapping[str, list[int] | ValueError]
"""Token ids of each text of a batch, or why the text cannot be scored."""


class _Scorer:
    """Tokenize, run padded forward passes, and apply sway's per-item math.

    A batch of one unpadded input runs exactly sway's forward call
    (``model(ids)``) and exactly its tensor math, so the single-item methods
    reproduce sway's numbers bit for bit. Bigger batches pad and pass an
    attention mask plus position ids computed from it, so a token sees the
    same positions and context as it would alone; only reduction order inside
    the kernels can differ (about 1e-6 in fp32).
    """

    def __init__(
        self, model: Any, tokenizer: Any, device: str, max_batch: int, max_tokens: int = 0
    ) -> None:
        import torch

        self.torch = torch
        self.model = model
        self.tokenizer = tokenizer
        self._encode = batch_encoder(tokenizer)
        self.device = device
        self.pad_token_id = int(tokenizer.pad_token_id)
        self.max_batch = max_batch
        self.max_tokens = max_tokens
        self._packs: bool | None = None
        """Whether packed passes match padded ones on this model (None: not yet tried)."""

    def encode_many(self, texts: Iterable[str]) -> Encoded:
        """Token ids of every text, in one tokenizer call for a batch.

        One call for n texts costs about what one text does (a fast
        tokenizer works through the list natively), and gives each text the
        ids sway's own call gives it alone (tested), without building tensors.
        Longer than the model's context (the advertised max_prompt_tokens) is
        a bad argument for that text only: positions past it are garbage at
        best, and an index error on the device at worst.
        """
        unique = list(dict.fromkeys(texts))
        if not unique:
            return {}
        encoded: dict[str, list[int] | ValueError] = {}
        for text, ids in zip(unique, self._encode(unique), strict=True):
            try:
                encoded[text] = self._within_context(ids)
            except ValueError as exc:
                encoded[text] = exc
        return encoded

    def _within_context(self, ids: list[int]) -> list[int]:
        if self.max_tokens and len(ids) > self.max_tokens:
            raise ValueError(
                f"text is {len(ids)} tokens; this model's context holds {self.max_tokens}"
            )
        return ids

    def run(
        self,
        prepare: Callable[[X, Encoded], _Job[R] | R],
        inputs: Sequence[X],
        texts: Callable[[X], Iterable[str]],
    ) -> list[R | BaseException]:
        """Tokenize every input's ``texts`` at once, prepare each input, batch those
        needing a forward pass, keep input order.

        A failure while preparing or finishing one item becomes that item's
        entry. A failure of a whole forward pass (out of memory, say) raises;
        the caller can retry item by item.
        """
        encoded = self.encode_many(text for value in inputs for text in texts(value))
        results: dict[int, R | BaseException] = {}
        jobs: list[tuple[int, _Job[R]]] = []
        for index, value in enumerate(inputs):
            try:
                prepared = prepare(value, encoded)
            except Exception as exc:
                results[index] = exc
                continue
            if isinstance(prepared, _Job):
                jobs.append((index, prepared))
            else:
                results[index] = prepared
        # Longest first (as lm-eval does): similar lengths share a chunk, and
        # an out-of-memory chunk shows up at once rather than at the end.
        jobs.sort(key=lambda item: len(item[1].ids), reverse=True)
        for chunk, packed in self._chunks(jobs):
            outcomes = self._run_chunk([job for _, job in chunk], packed=packed)
            for (index, _), outcome in zip(chunk, outcomes, strict=True):
                results[index] = outcome
        return [results[index] for index in range(len(inputs))]

    def _run_chunk(self, jobs: list[_Job[R]], *, packed: bool) -> list[R | BaseException]:
        batch = [job.ids for job in jobs]
        if packed:
            return _finish_each(jobs, self._forward_packed(batch))
        # Jobs of one operation all have a tail (next-token, logprob_of) or none (rolling).
        tail = max(job.tail for job in jobs) if all(job.tail for job in jobs) else 0
        if not tail:
            return _finish_each(jobs, self._forward_padded(batch))
        logits = self._forward(batch, tail=tail)
        top_k = jobs[0].top_k
        if len(jobs) > 1 and top_k and all(job.top_k == top_k for job in jobs):
            return self._finish_next_tokens(logits[:, -1, :], top_k)
        width = int(logits.shape[1])  # every row ends at the last column (left padding, or none)
        return _finish_each(
            jobs, [logits[row : row + 1, width - job.tail :] for row, job in enumerate(jobs)]
        )

    def _chunks(
        self, jobs: list[tuple[int, _Job[R]]]
    ) -> Iterator[tuple[list[tuple[int, _Job[R]]], bool]]:
        """Forward passes for ``jobs`` (sorted longest first), each with whether it is packed.

        Jobs that read every position are packed where this model allows it
        (``swayworker.hf.packing``), and packing wants mixed lengths in a
        pass, so they are cut by ``max_batch`` alone; everything else goes by
        length bucket, so that little of a padded pass is padding.
        """
        if any(job.tail for _, job in jobs) or not self._may_pack():
            for bucket in _length_buckets(jobs, self.max_batch):
                yield bucket, False
            return
        for start in range(0, len(jobs), self.max_batch):
            chunk = jobs[start : start + self.max_batch]
            batch = [job.ids for _, job in chunk]
            if self._packable(batch) and self._packing_checked(batch):
                yield chunk, True
            else:
                for bucket in _length_buckets(chunk, self.max_batch):
                    yield bucket, False

    def _may_pack(self) -> bool:
        """Not found unsafe on this model, and in fp32: where the packing check can
        tell a reduction-order difference from a mask the model ignored."""
        return self._packs is not False and self.model.dtype == self.torch.float32

    def _packable(self, batch: list[list[int]]) -> bool:
        """Packing ``batch`` saves a row, and no row is wider than a local-attention span.

        A custom mask replaces the model's own, sliding window or attention
        chunk included, so tokens of a row wider than the span would see too
        far back. A span this code cannot read (not a whole number) rules
        packing out.
        """
        width = max(len(ids) for ids in batch)
        for field in LOCAL_ATTENTION_FIELDS:
            span = getattr(self.model.config, field, None)
            if span is not None and not (isinstance(span, int) and width <= span):
                return False
        return len(pack_rows([len(ids) for ids in batch])) < len(batch)

    def _packing_checked(self, batch: list[list[int]]) -> bool:
        """Whether packing is safe on this model, checked once, on a probe from ``batch``.

        The probe is the longest sequence and the shortest ones that fit
        together in one row as wide: packed, two rows, one of them shared;
        padded, one row each. A model that ignores a custom 4D mask or
        explicit position ids (ALiBi, positions counted from a 2D mask) lets
        the shared row's sequences see each other, and its logits move far
        beyond the 1e-6 that reduction order explains; such a model, or one
        whose forward rejects the mask, keeps padding for good.
        """
        if self._packs is None:
            room, shortest = len(batch[0]), list[list[int]]()
            for ids in reversed(batch[1:]):
                if len(ids) > room:
                    break
                shortest.append(ids)
                room -= len(ids)
            probe = [batch[0], *shortest]
            self._packs = self._packed_matches(probe, self._forward_padded(probe))
        return self._packs

    def _forward_padded(self, batch: list[list[int]]) -> list[Any]:
        """Each sequence's logits ``(1, len, V)`` from one pass padded on the right."""
        logits = self._forward(batch, tail=0)
        return [logits[row : row + 1, : len(ids)] for row, ids in enumerate(batch)]

    def _forward_packed(self, batch: list[list[int]]) -> list[Any]:
        """Each sequence's logits ``(1, len, V)`` from one packed pass."""
        packed = packed_inputs(batch, self.pad_token_id, self.torch, self.model.dtype, self.device)
        with self.torch.inference_mode():
            logits = self.model(
                input_ids=packed.input_ids,
                attention_mask=packed.attention_mask,
                position_ids=packed.position_ids,
                use_cache=False,
            ).logits
        return [logits[span.row : span.row + 1, span.start : span.end] for span in packed.spans]

    def _packed_matches(self, batch: list[list[int]], padded: list[Any]) -> bool:
        try:
            packed = self._forward_packed(batch)
        except Exception as exc:
            logger.info("sequence packing is off for this model: its forward failed (%s)", exc)
            return False
        matches = all(
            self.torch.allclose(p, q, rtol=PACKING_TOLERANCE, atol=PACKING_TOLERANCE)
            for p, q in zip(packed, padded, strict=True)
        )
        if not matches:
            logger.info("sequence packing is off for this model: packed logits differ from padded")
        return matches

    def _forward(self, batch: list[list[int]], *, tail: int) -> Any:
        """Logits ``(B, T, V)`` for ``batch``; ``T`` is ``tail`` for a batch of several.

        A lone input keeps sway's exact call, and so its exact bits. Equal
        lengths need no mask at all. Otherwise batches whose jobs read only
        their last positions (``tail``) pad on the left, so every row ends at
        the last column, and the model projects only the last ``tail``
        positions onto the vocabulary (that projection is a large share of a
        forward pass: a third of the ~50M bench model's); the others pad on
        the right (every row starts at position 0).
        """
        torch = self.torch
        # A batch (not sway's exact lone call) also skips the KV cache nobody reads.
        keep: dict[str, Any] = {}
        if len(batch) > 1:
            keep = {"use_cache": False, "logits_to_keep": tail} if tail else {"use_cache": False}
        width = max(len(ids) for ids in batch)
        if all(len(ids) == width for ids in batch):
            input_ids = torch.tensor(batch, dtype=torch.long).to(self.device)
            with torch.inference_mode():
                return self.model(input_ids, **keep).logits
        rows, masks = [], []
        for ids in batch:
            pad = [self.pad_token_id] * (width - len(ids))
            ones, zeros = [1] * len(ids), [0] * len(pad)
            rows.append(pad + ids if tail else ids + pad)
            masks.append(zeros + ones if tail else ones + zeros)
        input_ids = torch.tensor(rows, dtype=torch.long).to(self.device)
        mask = torch.tensor(masks, dtype=torch.long).to(self.device)
        # Positions count real tokens only, so left padding shifts nothing.
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            return self.model(
                input_ids=input_ids, attention_mask=mask, position_ids=position_ids, **keep
            ).logits

    # -- per-operation preparation and math (sway's, step for step) ---------

    def prepare_logprob_of(self, pair: tuple[str, str], encoded: Encoded) -> _Job[float]:
        prompt, completion = pair
        prompt_len = len(_ids(encoded, prompt))
        full_ids = _ids(encoded, prompt + completion)
        if len(full_ids) <= prompt_len:
            raise probe_error(
                "logprob_of",
                "completion tokenized to zero tokens "
                f"(prompt={prompt!r}, completion={completion!r})",
            )
        completion_ids = full_ids[prompt_len:]
        return _Job(
            full_ids,
            lambda logits: self._finish_logprob_of(logits, completion_ids),
            tail=len(completion_ids) + 1,
        )

    def _finish_logprob_of(self, logits: Any, completion: list[int]) -> float:
        """sway's sum over the completion; ``logits`` are those of positions
        ``prompt_len - 1`` to the end (the logit at position t predicts token t + 1)."""
        functional = self.torch.nn.functional
        target = self._tensor(completion)
        log_probs = functional.log_softmax(logits[:, :-1, :].float(), dim=-1)
        gathered = log_probs.gather(-1, target.unsqueeze(-1)).squeeze(-1)
        return float(gathered.sum().item())

    def prepare_rolling(self, text: str, encoded: Encoded) -> _Job[Any] | Any:
        ids = _ids(encoded, text)
        if len(ids) < 2:
            return RollingLogprob(
                token_ids=np.asarray(ids, dtype=np.int64),
                logprobs=np.array([], dtype=np.float32),
                num_tokens=len(ids),
                total_logprob=0.0,
            )
        return _Job(ids, lambda logits: self._finish_rolling(logits, ids))

    def _finish_rolling(self, logits: Any, ids: list[int]) -> Any:
        functional = self.torch.nn.functional
        id_tensor = self._tensor(ids)
        log_probs = functional.log_softmax(logits[:, :-1].float(), dim=-1)
        gathered = log_probs.gather(-1, id_tensor[:, 1:].unsqueeze(-1)).squeeze(-1).squeeze(0)
        return RollingLogprob(
            token_ids=np.asarray(ids, dtype=np.int64),
            logprobs=gathered.cpu().numpy().astype(np.float32),
            num_tokens=len(ids),
            total_logprob=float(gathered.sum().item()),
        )

    def prepare_next_token(self, prompt: str, top_k: int, encoded: Encoded) -> _Job[Any]:
        ids = _ids(encoded, prompt)
        if not ids:
            # sway would hand the model an empty sequence; no batch can pad that.
            raise probe_error("next_token_dist", f"prompt tokenized to zero tokens ({prompt!r})")
        return _Job(ids, lambda logits: self._finish_next_token(logits, top_k), tail=1, top_k=top_k)

    def _finish_next_token(self, logits: Any, top_k: int) -> Any:
        torch = self.torch
        log_probs = torch.nn.functional.log_softmax(logits[:, -1, :].float(), dim=-1).squeeze(0)
        vocab = int(log_probs.shape[0])
        k = min(top_k, vocab)
        top = torch.topk(log_probs, k=k)
        tail_logprob = None if k == vocab else _tail_logprob(torch.exp(top.values).sum().item())
        return TokenDist(
            token_ids=top.indices.cpu().numpy().astype(np.int64),
            logprobs=top.values.cpu().numpy().astype(np.float32),
            vocab_size=vocab,
            tail_logprob=tail_logprob,
        )

    def _finish_next_tokens(self, last: Any, top_k: int) -> list[Any]:
        """``_finish_next_token`` for every row of ``last`` (the ``(B, V)`` last-position
        logits of a chunk) in one log-softmax, one top-k and one sum for the chunk.

        The same operations on the same rows (each row's log-softmax, top-k and
        sum are computed on that row alone in either case; measured bit-identical
        on vocabularies of 1k, 32k and 152k), but a handful of tensor calls
        instead of eight per item: a batch of 8 took 0.16 ms against 0.04 ms with
        a 1k vocabulary, and 1.4 ms against 0.5 ms with 32k, where the batched
        log-softmax and top-k also spread over the intra-op threads.
        """
        torch = self.torch
        log_probs = torch.nn.functional.log_softmax(last.float(), dim=-1)
        vocab = int(log_probs.shape[-1])
        k = min(top_k, vocab)
        top = torch.topk(log_probs, k=k)
        masses = torch.exp(top.values).sum(-1).tolist()
        token_ids = top.indices.cpu().numpy().astype(np.int64)
        logprobs = top.values.cpu().numpy().astype(np.float32)
        dists = []
        for row, mass in enumerate(masses):
            dists.append(
                TokenDist(
                    token_ids=token_ids[row].copy(),
                    logprobs=logprobs[row].copy(),
                    vocab_size=vocab,
                    tail_logprob=None if k == vocab else _tail_logprob(mass),
                )
            )
        return dists

    def generate(
        self, prompt: str, *, max_new_tokens: int, temperature: float, top_p: float, seed: int
    ) -> str:
        """sway's generate: greedy at temperature 0, else seeded sampling."""
        torch = self.torch
        inputs = self.tokenizer(prompt, return_tensors="pt")
        self._within_context(inputs.input_ids[0].tolist())
        inputs = inputs.to(self.device)
        torch.manual_seed(seed)
        do_sample = temperature > 0.0
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "do_sample": do_sample,
            "pad_token_id": self.pad_token_id,
        }
        if do_sample:
            kwargs.update(temperature=temperature, top_p=top_p)
        with torch.inference_mode():
            out_ids = self.model.generate(**inputs, **kwargs)
        new_tokens = out_ids[0, inputs["input_ids"].shape[1] :]
        return str(self.tokenizer.decode(new_tokens, skip_special_tokens=True))

    def _tensor(self, ids: list[int]) -> Any:
        return self.torch.tensor([ids], dtype=self.torch.long).to(self.device)


PADDING_WASTE = 0.25
"""A length bucket closes before its padding would exceed this share of its tokens."""
MIN_BUCKET = 8
"""...but not before it holds this many jobs: each pass has a fixed cost too."""


def _length_buckets(
    jobs: list[tuple[int, _Job[R]]], max_batch: int
) -> Iterator[list[tuple[int, _Job[R]]]]:
    """Cut jobs sorted longest first into forward passes of at most ``max_batch``.

    A pass pads every row to its longest one, so a batch of 40-token and
    8-token texts spends most of its compute on padding. A bucket therefore
    also closes when adding the next (shorter) job would make padding more
    than ``PADDING_WASTE`` of its tokens (once it holds ``MIN_BUCKET`` jobs:
    a pass has a fixed cost too), as lm-eval groups by length.
    """
    bucket: list[tuple[int, _Job[R]]] = []
    real = 0
    for item in jobs:
        length = len(item[1].ids)
        if bucket:
            width = len(bucket[0][1].ids)  # the longest: the list is sorted
            padded = width * (len(bucket) + 1)
            wasteful = (padded - real - length) > PADDING_WASTE * padded
            if len(bucket) == max_batch or (len(bucket) >= MIN_BUCKET and wasteful):
                yield bucket
                bucket, real = [], 0
        bucket.append(item)
        real += length
    if bucket:
        yield bucket


def _tail_logprob(top_mass: float) -> float:
    """sway's log-mass of the tokens outside a top-k whose probabilities sum to
    ``top_mass`` (None is for a top-k that covers the whole vocabulary)."""
    tail_mass = float(1.0 - top_mass)
    return float(np.log(tail_mass)) if tail_mass > 1e-12 else 0.0


def _ids(encoded: Encoded, text: str) -> list[int]:
    """The ids ``encode_many`` found for ``text``, or the reason it could not."""
    ids = encoded[text]
    if isinstance(ids, ValueError):
        raise ids
    return ids


def _finish_each(jobs: list[_Job[R]], parts: list[Any]) -> list[R | BaseException]:
    """Each job's ``finish`` on its own logits; a failure becomes that job's outcome."""
    outcomes: list[R | BaseException] = []
    for job, part in zip(jobs, parts, strict=True):
        try:
            outcomes.append(job.finish(part))
        except Exception as exc:
            outcomes.append(exc)
    return outcomes


def _single(outcomes: list[R | BaseException]) -> R:
    """The one result of a batch of one, raising it if it is an exception."""
    (outcome,) = outcomes
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


# --- views -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HFView(ScorerView[_Scorer]):
    """One view (base, ft, scaled or null) of an :class:`HFDifferentialBackend`.

    Every view scores through the same module; what differs is the adapter
    state the backend set up when the view was entered.
    """

    def logprob_of(self, prompt: str, completion: str) -> float:
        return _single(self.logprob_of_many([(prompt, completion)]))

    def rolling_logprob(self, text: str) -> Any:
        return _single(self.rolling_logprob_many([text]))

    def next_token_dist(self, prompt: str, *, top_k: int = 256) -> Any:
        return _single(self.next_token_dist_many([prompt], top_k))

    def logprob_of_many(self, pairs: Sequence[tuple[str, str]]) -> list[float | BaseException]:
        return self._scorer.run(
            self._scorer.prepare_logprob_of, pairs, lambda pair: (pair[0], pair[0] + pair[1])
        )

    def rolling_logprob_many(self, texts: Sequence[str]) -> list[Any]:
        return self._scorer.run(self._scorer.prepare_rolling, texts, lambda text: (text,))

    def next_token_dist_many(self, prompts: Sequence[str], top_k: int = 256) -> list[Any]:
        def prepare(prompt: str, encoded: Encoded) -> _Job[Any]:
            return self._scorer.prepare_next_token(prompt, top_k, encoded)

        return self._scorer.run(prepare, prompts, lambda prompt: (prompt,))


# --- the backend -------------------------------------------------------------


class HFDifferentialBackend(AdapterViews[HFView]):
    """sway's HF differential backend, with batched views, for the worker.

    Views toggle shared weights in place, so only one may be active at a
    time and concurrent views are unsafe.
    """

    safe_for_concurrent_views: bool = False
    supports_batched_forward: bool = True

    def __init__(
        self,
        *,
        base_spec: ModelSpecLike,
        adapter_path: Path | str,
        max_batch: int = HF_MAX_BATCH,
        max_resident: int = DEFAULT_MAX_RESIDENT,
    ) -> None:
        _check_max_batch(max_batch)
        torch, transformers, peft = _require_hf()
        self._torch = torch
        self._transformers = transformers
        self._peft = peft
        self._base = str(base_spec.base)
        self._device = _resolve_device(str(base_spec.device), torch)
        self._dtype = _resolve_dtype(str(base_spec.dtype), self._device, torch)
        self._trust = bool(base_spec.trust_remote_code)
        self._max_batch = max_batch
        self._names = (f"adapter{n}" for n in itertools.count())
        self._tokenizers: dict[str, Any] = {}
        first = Path(adapter_path).resolve()

        tokenizer = self._tokenizer_for(first)
        base_model = transformers.AutoModelForCausalLM.from_pretrained(
            self._base, dtype=self._dtype, trust_remote_code=self._trust
        )
        base_model.to(self._device)
        name = next(self._names)
        model = peft.PeftModel.from_pretrained(
            base_model, str(first), adapter_name=name, is_trainable=False
        )
        model.eval()
        check_dtype_runs(model, self._dtype, self._device)
        self._model: Any = model
        self._config: Any = base_model.config
        self._vocab_size = int(model.get_output_embeddings().weight.shape[0])
        self._closed = False
        first_adapter = _Adapter(name, self._new_scorer(tokenizer), _config_of(peft, str(first)))
        self._resident = ResidentAdapters[_Adapter](
            max_resident, self._load_adapter, self._unload_adapter
        )
        self._resident.add(str(first), first_adapter)
        self._adapter_path = first
        self._active: _Adapter | None = first_adapter
        self._facades: dict[str, AdapterOf[HFView]] = {}
        self._slot = ViewSlot(type(self).__name__)

    # -- facts the worker advertises ---------------------------------------

    @property
    def vocab_size(self) -> int:
        """Rows of the output embedding: the width of every logits vector."""
        return self._vocab_size

    @property
    def device(self) -> str:
        return self._device

    @property
    def dtype(self) -> str:
        return str(self._dtype).removeprefix("torch.")

    @property
    def max_prompt_tokens(self) -> int:
        """The model's context length, 0 when its config does not say."""
        return int(getattr(self._config, "max_position_embeddings", 0) or 0)

    @property
    def max_batch(self) -> int:
        """Most inputs one padded forward pass takes."""
        return self._max_batch

    @max_batch.setter
    def max_batch(self, value: int) -> None:
        self._max_batch = _check_max_batch(value)
        for path in self._resident.paths():
            self._resident.get(path).scorer.max_batch = value

    @property
    def max_resident_adapters(self) -> int:
        """Most adapters held beside the base at once (``ResidentAdapters``)."""
        return self._resident.limit

    def framework_versions(self) -> dict[str, str]:
        import tokenizers

        return {
            "torch": str(self._torch.__version__),
            "transformers": str(self._transformers.__version__),
            "peft": str(self._peft.__version__),
            "tokenizers": str(tokenizers.__version__),
        }

    def cache_identity(self) -> str:
        """Base id + resolved adapter path, in sway's format, to key on-disk caches."""
        return self.identity_of(str(self._adapter_path))

    def identity_of(self, path: str) -> str:
        """The cache identity of a backend on this base with adapter ``path``."""
        return f"hf:{self._base}:{path}"

    # -- several adapters on the one base -------------------------------------

    def resident_adapter(self, path: str) -> AdapterOf[HFView]:
        """Adapter ``path`` (resolved) on this base, as a backend of its own.

        It is loaded when one of its views is first entered (and again after
        an eviction), so naming it costs nothing yet.
        """
        resolved = str(Path(path).expanduser().resolve())
        facade = self._facades.get(resolved)
        if facade is None:
            facade = self._facades[resolved] = AdapterOf(self, resolved)
        return facade

    def preload(self, path: str) -> None:
        """Load adapter ``path`` now (a Load with keep_resident), raising if it cannot be."""
        self._resident.get(str(Path(path).expanduser().resolve()))

    def swap_adapter(self, path: Path | str) -> bool:
        """Make ``path`` this backend's adapter and drop the others, keeping the base.

        Afterwards the backend answers (identity, views, numbers) as a fresh
        one built with ``path`` would. A failed load leaves it as it was and
        raises; the answer is always True (swapped: no fresh Load needed).
        """
        resolved = Path(path).expanduser().resolve()
        current = str(self._adapter_path)
        if str(resolved) not in self._resident and self._resident.paths() == [current]:
            rewritten = self._overwritten(self._resident.get(current), str(resolved))
            if rewritten is not None:
                self._resident.rekey(current, str(resolved), rewritten)
                if self._active is not None and self._active.name == rewritten.name:
                    self._active = rewritten
        self._resident.keep_only(str(resolved))
        self._adapter_path = resolved
        self._facades = {p: f for p, f in self._facades.items() if p in self._resident}
        return True

    @contextmanager
    def selected(self, path: str) -> Iterator[None]:
        """``path``'s adapter resident, safe from eviction and active for the block."""
        with self._resident.pinned(path) as adapter:
            if adapter is not self._active:
                self._model.set_adapter(adapter.name)
                self._active = adapter
            yield

    @contextmanager
    def _view(self, mode: str, view_id: str) -> Iterator[HFView]:
        with self._slot.claim(mode), self.selected(str(self._adapter_path)):
            yield self._make_view(view_id)

    def _load_adapter(self, path: str) -> _Adapter:
        """Load adapter ``path`` beside the others; an error names the path and the base."""
        self._check_open()
        name = next(self._names)
        try:
            tokenizer = self._tokenizer_for(Path(path))
            config = _config_of(self._peft, path)
            if config["peft_type"] != str(self._peft.PeftType.LORA):
                raise ValueError(
                    f"it is a {config['peft_type']} adapter; this worker holds LoRA ones"
                )
            self._model.load_adapter(path, adapter_name=name, is_trainable=False)
        except Exception as exc:
            if name in self._model.peft_config:
                self._model.delete_adapter(name)
            raise BadSpec(
                f"adapter {path} cannot be loaded on the base {self._base} this worker holds: "
                f"{type(exc).__name__}: {exc}. Check that it is a LoRA adapter trained on "
                "this base (adapter_config.json, adapter_model.safetensors), or give it a "
                "worker of its own."
            ) from exc
        return _Adapter(name, self._new_scorer(tokenizer), config)

    def _overwritten(self, adapter: _Adapter, path: str) -> _Adapter | None:
        """``adapter``'s LoRA tensors overwritten with those of ``path``; None when they differ
        in config, names or shapes (then ``path`` is loaded the long way, which says why).

        A checkpoint sweep swaps adapters of one LoRA config: the modules peft
        would inject are already there, so only the tensors change (a few ms,
        against ~100 ms for peft to walk the model twice). Every tensor is
        checked before any is written, so a mismatch changes nothing.
        """
        torch = self._torch
        try:
            config = _config_of(self._peft, path)
            weights = self._peft.utils.load_peft_weights(path, device="cpu")
        except Exception:
            return None
        if config != adapter.config:
            return None
        params = dict(self._lora_parameters(adapter.name))
        incoming = {_param_name(key, adapter.name): tensor for key, tensor in weights.items()}
        if incoming.keys() != params.keys() or any(
            params[k].shape != t.shape for k, t in incoming.items()
        ):
            return None
        tokenizer = self._tokenizer_for(Path(path))
        with torch.no_grad():
            for key, tensor in incoming.items():
                param = params[key]
                param.copy_(tensor.to(dtype=param.dtype, device=param.device))
        scorer = adapter.scorer
        if tokenizer is not scorer.tokenizer:
            scorer = self._new_scorer(tokenizer)
        return _Adapter(adapter.name, scorer, config)

    def _unload_adapter(self, path: str, adapter: _Adapter) -> None:
        self._facades.pop(path, None)
        if self._model is None:
            return
        self._model.delete_adapter(adapter.name)
        if adapter is self._active:  # peft made another one active; set it again before use
            self._active = None

    def _tokenizer_for(self, adapter: Path) -> Any:
        """sway's tokenizer choice (the adapter's own, else the base's), loaded once per source."""
        source = str(tokenizer_source(self._base, adapter))
        tokenizer = self._tokenizers.get(source)
        if tokenizer is None:
            tokenizer = self._transformers.AutoTokenizer.from_pretrained(
                source, trust_remote_code=self._trust
            )
            if tokenizer.pad_token_id is None:
                tokenizer.pad_token = tokenizer.eos_token
            self._tokenizers[source] = tokenizer
        return tokenizer

    def _new_scorer(self, tokenizer: Any) -> _Scorer:
        return _Scorer(
            self._model, tokenizer, self._device, self._max_batch, self.max_prompt_tokens
        )

    # -- views: the adapter states (``AdapterViews`` makes the four views) --------

    def _adapter_off(self) -> Any:
        return self._model.disable_adapter()

    @contextmanager
    def _adapter_scaled(self, lam: float) -> Iterator[None]:
        saved: list[tuple[dict[str, float], str, float]] = []
        key = self._selected_adapter().name
        try:
            for scaling in self._lora_scalings():
                if key in scaling:
                    original = float(scaling[key])
                    saved.append((scaling, key, original))
                    scaling[key] = original * lam
            yield
        finally:
            for scaling, name, original in saved:
                scaling[name] = original

    @contextmanager
    def _adapter_noise(self, seed: int, std: float) -> Iterator[None]:
        """Draws come from one CPU generator in ``named_parameters`` order, so a
        seed gives the same noise on every device."""
        torch = self._torch
        generator = torch.Generator(device="cpu").manual_seed(int(seed))
        saved: list[tuple[Any, Any]] = []
        try:
            with torch.no_grad():
                for _, param in self._lora_parameters(self._selected_adapter().name):
                    saved.append((param, param.detach().clone()))
                    noise = torch.randn(*param.shape, generator=generator, dtype=torch.float32)
                    param.copy_(noise.to(dtype=param.dtype, device=param.device) * std)
            yield
        finally:
            with torch.no_grad():
                for param, original in saved:
                    param.copy_(original)

    def preflight_finite_check(self) -> tuple[bool, str]:
        """One small forward pass per view; non-finite logprobs fail the check (sway's)."""
        return preflight.check_base_and_ft(self)

    def close(self) -> None:
        """Drop the model and free accelerator memory; safe to call twice."""
        self._closed = True
        self._model = None
        self._facades = {}
        if self._torch.cuda.is_available():
            self._torch.cuda.empty_cache()

    # -- internals ----------------------------------------------------------

    def _make_view(self, view_id: str) -> HFView:
        return HFView(id=view_id, _scorer=self._selected_adapter().scorer)

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{type(self).__name__} is closed")

    def _selected_adapter(self) -> _Adapter:
        """The adapter active on the model (``selected`` sets it as a view is entered)."""
        self._check_open()
        if self._active is None:
            raise RuntimeError("no adapter is selected: enter a view first")
        return self._active

    def _lora_scalings(self) -> Iterator[dict[str, float]]:
        lora_layer = self._peft.tuners.lora.LoraLayer
        for module in self._model.modules():
            scaling = getattr(module, "scaling", None)
            if isinstance(module, lora_layer) and isinstance(scaling, dict):
                yield scaling

    def _lora_parameters(self, adapter: str) -> Iterator[tuple[str, Any]]:
        """``adapter``'s LoRA tensors (``...lora_A.<adapter>.weight``), in model order."""
        marks = tuple(f"{part}.{adapter}." for part in ("lora_A", "lora_B"))
        for name, param in self._model.named_parameters():
            if any(mark in name for mark in marks):
                yield name, param


@dataclass(frozen=True, slots=True)
class _Adapter:
    """One adapter loaded on the model: its peft name, the scorer with its tokenizer, and
    its config (what another adapter must match to take over its tensors)."""

    name: str
    scorer: _Scorer
    config: dict[str, Any]


_NOT_SHAPE = ("base_model_name_or_path", "revision", "inference_mode")
"""Config fields that say where an adapter came from, not what its tensors are."""


def _config_of(peft: Any, path: str) -> dict[str, Any]:
    """The adapter's config as a plain dict, less the fields of ``_NOT_SHAPE``."""
    config = peft.PeftConfig.from_pretrained(path).to_dict()
    config["peft_type"] = str(config.get("peft_type"))
    return {k: v for k, v in config.items() if k not in _NOT_SHAPE}


def _param_name(saved: str, adapter: str) -> str:
    """The model's name for a saved LoRA tensor: peft saves ``...lora_A.weight`` for
    ``...lora_A.<adapter>.weight``."""
    for part in (".lora_A.", ".lora_B."):
        if f"{part}weight" in saved:
            return saved.replace(f"{part}weight", f"{part}{adapter}.weight")
    return saved


def _check_max_batch(value: int) -> int:
    if value < 1:
        raise ValueError(f"max_batch must be at least 1; got {value!r}")
    return value


__all__ = ["HFDifferentialBackend", "HFView"]
