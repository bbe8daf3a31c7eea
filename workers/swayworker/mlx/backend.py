"""The MLX differential backend: sway's semantics on mlx-lm, one model copy.

It loads the base with ``mlx_lm.load``, takes a PEFT adapter directory as
is (``swayworker.mlx.adapter`` checks it, ``.convert`` turns it into MLX
layout once per content hash) and wraps the adapted layers in a runtime
LoRA (``.lora``), so the base, fine-tuned, scaled and null views are
switches on the same weights rather than extra model copies.

Scoring follows the HF worker step for step so the two agree to float
noise on the same weights: the same ``transformers`` tokenizer call (the
adapter's tokenizer when it ships one, else the base's: sway's rule), one
unpadded forward pass per lone input, float32 log-softmax, the same slicing
for ``logprob_of`` and ``rolling_logprob``, the same top-k and three-state
tail. Batches (``*_many``, which the worker's ScoreBatch uses) pad on the
right and need no mask: attention is causal, so padding after a row's end
changes none of its positions.
Generation decodes with that tokenizer too, so equal token ids give equal
text.

mlx is imported at module import: load this module only where mlx exists
(``python -m swayworker.mlx`` turns the ImportError into an install hint).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import mlx.core as mx
import mlx_lm
import numpy as np
from mlx_lm.generate import generate_step
from mlx_lm.sample_utils import make_sampler

from swayworker import preflight
from swayworker.mlx import adapter as peft_adapter
from swayworker.mlx import compat, convert, lora
from swayworker.results import RollingLogprob, TokenDist, probe_error
from swayworker.spec import ModelSpecLike, tokenizer_source
from swayworker.views import AdapterViews, ScorerView, ViewSlot

log = logging.getLogger("swayworker")

_DTYPES = {"fp32": mx.float32, "fp16": mx.float16, "bf16": mx.bfloat16}

MAX_BATCH = 64
"""Most inputs one padded forward pass takes (the worker's ``limits.max_batch``)."""
MAX_LOGIT_FLOATS = 1 << 26
"""A batch's logits (rows x width x vocab) stay under this many floats (256 MB in
float32); a single input past it still runs, alone, as an unbatched call would."""

X = TypeVar("X")


@dataclass(frozen=True, slots=True)
class _Job:
    """One input needing a forward pass over ``ids``; ``finish`` turns its float32
    log-softmax rows (``(len(ids), V)``, or ``(1, V)`` when ``last_only``) into the result."""

    ids: list[int]
    finish: Callable[[Any], Any]
    last_only: bool = False


def _top_k(row: Any, top_k: int) -> TokenDist:
    """Descending top-k of one log-softmax row with sway's three-state tail."""
    vocab = int(row.shape[0])
    k = min(top_k, vocab)
    top_ids = np.argsort(-row, kind="stable")[:k]
    values = row[top_ids]
    tail_logprob: float | None = None  # k covers the whole vocabulary
    if k != vocab:
        tail_mass = 1.0 - float(np.exp(values).sum())
        tail_logprob = math.log(tail_mass) if tail_mass > 1e-12 else 0.0
    return TokenDist(
        token_ids=top_ids.astype(np.int64),
        logprobs=values.astype(np.float32),
        vocab_size=vocab,
        tail_logprob=tail_logprob,
    )


class _Scorer:
    """Tokenize like the HF worker, run forward passes, apply sway's math."""

    def __init__(
        self, model: Any, tokenizer: Any, eos_ids: set[int], max_tokens: int, vocab: int
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.eos_ids = eos_ids
        self.max_tokens = max_tokens
        self.vocab = vocab

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text``; longer than the advertised context is a bad argument.

        As in the HF worker: a rotary model computes positions past its
        context without complaint, and the numbers there are garbage.
        """
        ids = [int(i) for i in self.tokenizer(text).input_ids]
        if self.max_tokens and len(ids) > self.max_tokens:
            raise ValueError(
                f"text is {len(ids)} tokens; this model's context holds {self.max_tokens}"
            )
        return ids

    def run(self, inputs: Sequence[X], prepare: Callable[[X], Any]) -> list[Any]:
        """Prepare each input, score the jobs in right-padded batches, keep input order.

        A failure while preparing or finishing one input becomes that
        input's entry; a failed forward pass raises. One input is exactly
        the unbatched call (``model(ids)``), so unary results do not change.
        """
        results: dict[int, Any] = {}
        jobs: list[tuple[int, _Job]] = []
        for index, value in enumerate(inputs):
            try:
                prepared = prepare(value)
            except Exception as exc:
                results[index] = exc
                continue
            if isinstance(prepared, _Job):
                jobs.append((index, prepared))
            else:
                results[index] = prepared
        jobs.sort(key=lambda item: len(item[1].ids), reverse=True)
        for chunk in self._chunks(jobs):
            rows = self._log_probs_many([job for _, job in chunk])
            for (index, job), row in zip(chunk, rows, strict=True):
                try:
                    results[index] = job.finish(row)
                except Exception as exc:
                    results[index] = exc
        return [results[index] for index in range(len(inputs))]

    def _chunks(self, jobs: list[tuple[int, _Job]]) -> Iterator[list[tuple[int, _Job]]]:
        """Longest first; a chunk's logits (rows x width x vocab) stay within a budget."""
        start = 0
        while start < len(jobs):
            width = len(jobs[start][1].ids)
            rows = max(1, min(MAX_BATCH, MAX_LOGIT_FLOATS // max(1, width * self.vocab)))
            yield jobs[start : start + rows]
            start += rows

    def _log_probs_many(self, jobs: list[_Job]) -> list[Any]:
        """float32 log-softmax rows per job, from one forward pass over right-padded ids.

        Attention is causal, so tokens appended after a row's end (the
        padding) change none of its positions: no mask is needed, and each
        row is cut back to its own length (or to its last position, for a
        next-token job).
        """
        width = max(len(job.ids) for job in jobs)
        batch = mx.array([job.ids + [0] * (width - len(job.ids)) for job in jobs])
        logits = self.model(batch)
        out = []
        for i, job in enumerate(jobs):
            n = len(job.ids)
            row = (logits[i, n - 1 : n] if job.last_only else logits[i, :n]).astype(mx.float32)
            out.append(np.array(row - mx.logsumexp(row, axis=-1, keepdims=True)))
        return out

    # -- per-operation preparation and math (the HF worker's, step for step) --

    def prepare_logprob_of(self, pair: tuple[str, str]) -> _Job:
        prompt, completion = pair
        prompt_len = len(self.encode(prompt))
        full_ids = self.encode(prompt + completion)
        if len(full_ids) <= prompt_len:
            raise probe_error(
                "logprob_of",
                "completion tokenized to zero tokens "
                f"(prompt={prompt!r}, completion={completion!r})",
            )
        if prompt_len == 0:
            raise probe_error("logprob_of", f"prompt tokenized to zero tokens ({prompt!r})")
        targets = np.asarray(full_ids[prompt_len:], dtype=np.int64)

        def finish(log_probs: Any) -> float:
            # The row at position t predicts token t + 1.
            rows = log_probs[prompt_len - 1 : -1]
            return float(rows[np.arange(targets.size), targets].sum())

        return _Job(full_ids, finish)

    def prepare_rolling(self, text: str) -> Any:
        ids = self.encode(text)
        if len(ids) < 2:
            return RollingLogprob(
                token_ids=np.asarray(ids, dtype=np.int64),
                logprobs=np.array([], dtype=np.float32),
                num_tokens=len(ids),
                total_logprob=0.0,
            )

        def finish(log_probs: Any) -> Any:
            rows = log_probs[:-1]
            gathered = rows[np.arange(len(ids) - 1), np.asarray(ids[1:], dtype=np.int64)]
            return RollingLogprob(
                token_ids=np.asarray(ids, dtype=np.int64),
                logprobs=gathered.astype(np.float32),
                num_tokens=len(ids),
                total_logprob=float(gathered.sum()),
            )

        return _Job(ids, finish)

    def prepare_next_token(self, prompt: str, top_k: int) -> _Job:
        ids = self.encode(prompt)
        if not ids:
            raise probe_error("next_token_dist", f"prompt tokenized to zero tokens ({prompt!r})")
        return _Job(ids, lambda log_probs: _top_k(log_probs[-1], top_k), last_only=True)

    def generate(
        self, prompt: str, *, max_new_tokens: int, temperature: float, top_p: float, seed: int
    ) -> str:
        """Greedy at temperature 0, else sampled from a seeded MLX generator."""
        mx.random.seed(int(seed))
        sampler = make_sampler(temp=temperature, top_p=top_p) if temperature > 0 else None
        prompt_ids = mx.array(self.encode(prompt))
        new_ids: list[int] = []
        for token, _ in generate_step(
            prompt_ids, self.model, max_tokens=max_new_tokens, sampler=sampler
        ):
            new_ids.append(int(token))
            if new_ids[-1] in self.eos_ids:
                break
        return str(self.tokenizer.decode(new_ids, skip_special_tokens=True))


@dataclass(frozen=True, slots=True)
class MLXView(ScorerView[_Scorer]):
    """One view of an :class:`MLXDifferentialBackend` (the LoRA state is the backend's)."""

    def logprob_of(self, prompt: str, completion: str) -> float:
        return float(_single(self.logprob_of_many([(prompt, completion)])))

    def rolling_logprob(self, text: str) -> Any:
        return _single(self.rolling_logprob_many([text]))

    def next_token_dist(self, prompt: str, *, top_k: int = 256) -> Any:
        return _single(self.next_token_dist_many([prompt], top_k))

    def logprob_of_many(self, pairs: Sequence[tuple[str, str]]) -> list[Any]:
        return self._scorer.run(pairs, self._scorer.prepare_logprob_of)

    def rolling_logprob_many(self, texts: Sequence[str]) -> list[Any]:
        return self._scorer.run(texts, self._scorer.prepare_rolling)

    def next_token_dist_many(self, prompts: Sequence[str], top_k: int = 256) -> list[Any]:
        return self._scorer.run(prompts, lambda p: self._scorer.prepare_next_token(p, top_k))


def _single(outcomes: list[Any]) -> Any:
    """The one result of a batch of one, raising it if it is an exception."""
    (outcome,) = outcomes
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


class MLXDifferentialBackend(AdapterViews[MLXView]):
    """Base, fine-tuned, scaled and null views of one mlx-lm model + PEFT adapter.

    Views switch shared layers in place, so only one may be active at a
    time and concurrent views are unsafe (the worker serialises them).
    """

    safe_for_concurrent_views: bool = False
    supports_batched_forward: bool = True
    max_batch: int = MAX_BATCH

    def __init__(
        self,
        *,
        base_spec: ModelSpecLike,
        adapter_path: Path | str,
        cache_dir: Path | None = None,
    ) -> None:
        self._base = str(base_spec.base)
        self._adapter_path = Path(adapter_path).resolve()
        plan = peft_adapter.plan_adapter(self._adapter_path)  # refuse before loading
        base_dir = Path(self._base)
        peft_adapter.check_base(base_dir)
        self._device = _select_device(str(base_spec.device))
        config = compat.read_config(base_dir)
        shim = compat.shim_for(config)
        model, eos_ids = _load_model(
            self._base, shim, config, trust_remote_code=bool(base_spec.trust_remote_code)
        )
        self._dtype = _resolve_dtype(str(base_spec.dtype), self._device)
        model.set_dtype(self._dtype)
        self._cache_dir = cache_dir or convert.default_cache_dir()
        self._module_path = shim.module_path
        converted = convert.load_converted(plan, self._cache_dir)
        self._lora = lora.attach(model, converted, plan, shim.module_path, shim.embedding)
        model.eval()
        mx.eval(model.parameters())
        source = tokenizer_source(self._base, self._adapter_path)
        tokenizer = _load_tokenizer(source, bool(base_spec.trust_remote_code))
        self._max_positions = int(getattr(model.args, "max_position_embeddings", 0) or 0)
        self._vocab_size = int(model(mx.array([[0]])).shape[-1])
        self._scorer: _Scorer | None = _Scorer(
            model, tokenizer, eos_ids, self._max_positions, self._vocab_size
        )
        self._slot = ViewSlot(type(self).__name__)

    # -- facts the worker advertises ---------------------------------------

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def device(self) -> str:
        return self._device

    @property
    def dtype(self) -> str:
        return str(self._dtype).removeprefix("mlx.core.")

    @property
    def max_prompt_tokens(self) -> int:
        return self._max_positions

    def framework_versions(self) -> dict[str, str]:
        import transformers

        return {
            "mlx": str(mx.__version__),
            "mlx-lm": str(mlx_lm.__version__),
            "transformers": str(transformers.__version__),
        }

    def cache_identity(self) -> str:
        """Base id + resolved adapter path, in the HF backend's format."""
        return f"mlx:{self._base}:{self._adapter_path}"

    def swap_adapter(self, path: Path | str) -> bool:
        """Take adapter ``path`` on the base held, in place, when it is another checkpoint of
        the same LoRA layout (``LoraLayers.rewrite``); False when it must be loaded afresh.

        Afterwards the backend answers as a fresh one built with ``path``
        would (same layers, same arrays, same tokenizer), without reading
        and converting the base again.
        """
        resolved = Path(path).expanduser().resolve()
        if tokenizer_source(self._base, resolved) != tokenizer_source(
            self._base, self._adapter_path
        ):
            return False
        try:
            plan = peft_adapter.plan_adapter(resolved)
            converted = convert.load_converted(plan, self._cache_dir)
        except Exception:
            return False  # loading it afresh reports what is wrong with it
        if not self._lora.rewrite(converted, plan, self._module_path):
            return False
        log.info("adapter %s took over the layers of %s in place", resolved, self._adapter_path)
        self._adapter_path = resolved
        return True

    # -- views: the adapter states (``AdapterViews`` makes the four views) --------

    def _adapter_off(self) -> Any:
        return self._lora.disabled()

    def _adapter_scaled(self, lam: float) -> Any:
        return self._lora.scaled(lam)

    def _adapter_noise(self, seed: int, std: float) -> Any:
        """The generator is MLX's, see ``LoraLayers.noise``."""
        return self._lora.noise(seed, std)

    def preflight_finite_check(self) -> tuple[bool, str]:
        """One small forward pass per view; non-finite logprobs fail the check (sway's)."""
        return preflight.check_base_and_ft(self)

    def close(self) -> None:
        """Drop the model; MLX frees the memory with the last reference. Idempotent."""
        self._scorer = None

    # -- internals ----------------------------------------------------------

    def _make_view(self, view_id: str) -> MLXView:
        if self._scorer is None:
            raise RuntimeError(f"{type(self).__name__} is closed")
        return MLXView(id=view_id, _scorer=self._scorer)


def _select_device(requested: str) -> str:
    """``auto`` keeps MLX's default (the GPU on Apple silicon); cpu/gpu force one."""
    if requested == "cpu":
        mx.set_default_device(mx.cpu)
    elif requested in ("gpu", "mps", "cuda"):
        mx.set_default_device(mx.gpu)
    elif requested != "auto":
        raise ValueError(f"device {requested!r} is not an MLX device (use auto, cpu or gpu)")
    return "gpu" if mx.default_device() == mx.gpu else "cpu"


def _resolve_dtype(requested: str, device: str) -> Any:
    """sway's table: explicit names map directly; ``auto`` is fp16 on the GPU, fp32 on CPU."""
    if requested in _DTYPES:
        return _DTYPES[requested]
    if requested != "auto":
        raise ValueError(f"dtype {requested!r} is not one of auto, fp32, fp16, bf16")
    return mx.float16 if device == "gpu" else mx.float32


def _load_model(
    base: str, shim: compat.Shim, config: compat.Config, *, trust_remote_code: bool
) -> tuple[Any, set[int]]:
    """``mlx_lm.load``'s model and eos ids, with the architecture's shims applied.

    Config overrides go in through ``model_config``; weight-name renames
    through ``get_model_classes``, as a subclass of mlx-lm's model whose
    ``sanitize`` renames first (GPT-2 saved by transformers names its
    weights ``transformer.h.*``; mlx-lm's GPT-2 expects ``h.*``).
    """
    from mlx_lm import utils

    # The resolver mlx_lm.load itself uses (a local folder as is, else a hub snapshot).
    path = Path(base) if Path(base).is_dir() else utils._download(base)

    def classes(config: dict[str, Any]) -> tuple[type, type]:
        try:
            model_class, args_class = utils._get_classes(config)
        except ValueError as exc:  # mlx-lm: "Model type X not supported."
            raise peft_adapter.UnsupportedAdapter(
                f"{base}: mlx-lm {mlx_lm.__version__} has no model for architecture "
                f"{config.get('model_type')!r} ({exc}); serve this model with the hf worker"
            ) from exc
        if not shim.weight_renames:
            return model_class, args_class

        class Renamed(model_class):  # type: ignore[misc,valid-type]
            def sanitize(self, weights: dict[str, Any]) -> dict[str, Any]:
                renamed = {shim.weight_name(k): v for k, v in weights.items()}
                parent = getattr(super(), "sanitize", None)
                return parent(renamed) if parent is not None else renamed

        return Renamed, args_class

    model, loaded = utils.load_model(
        path,
        model_config=shim.overrides(config),
        get_model_classes=classes,
        trust_remote_code=trust_remote_code,
    )
    wrapper = utils.load_tokenizer(path, eos_token_ids=loaded.get("eos_token_id"))
    return model, set(wrapper.eos_token_ids)


def _load_tokenizer(source: str, trust_remote_code: bool) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)


__all__ = ["MLXDifferentialBackend", "MLXView"]
