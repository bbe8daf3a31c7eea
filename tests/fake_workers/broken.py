"""A worker with one deliberate contract mistake, to prove the conformance kit catches it.

``python broken.py FLAW`` serves the toy model of the dummy worker with
exactly one mistake, of the kind a worker author really makes:

* ``wrong-tail``: tail_logprob is log(mass inside the top-k), not outside it
* ``unsorted-top-k``: the top-k comes back in ascending order
* ``nondeterministic``: logprob_of wobbles in its last bits (like an unordered reduction)
* ``wrong-error-code``: a too-long prompt raises RuntimeError (INTERNAL), not ValueError
* ``unstable-identity``: cache_identity holds the process id
* ``probe-as-value-error``: sway's ProbeError goes on the wire as ``builtins.ValueError``
* ``unqualified-error-type``: ``sway-error-type`` is a bare class name (``ValueError``)
* ``attrs-not-json``: ``sway-error-attrs`` is ``key=value`` text, not JSON
* ``no-loaded-spec``: Describe after Load leaves ``loaded_spec`` out
* ``kind-changes``: ``worker_kind`` gains a suffix once a model is loaded
* ``echo-prompt``: generate returns the prompt followed by the new text
* ``too-many-tokens``: generate ignores max_new_tokens and writes two more words
* ``float64-logprobs``: rolling logprobs are sent as float64
* ``big-endian-ids``: next_token_dist's token ids are sent big-endian
* ``long-errors``: a limit of 2 prompt tokens, refused with a 3000-character message
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from typing import Any

import numpy as np
from swayplugin.v1 import backend_pb2 as pb
from swayworker import errors, frames, serve, servicer
from swayworker.dummy import DummyBackend

VIEW_FLAWS = ("wrong-tail", "unsorted-top-k", "nondeterministic", "wrong-error-code")
GENERATE_FLAWS = ("echo-prompt", "too-many-tokens")
WIRE_FLAWS = ("probe-as-value-error", "unqualified-error-type", "attrs-not-json")
DESCRIBE_FLAWS = ("no-loaded-spec", "kind-changes")
RESULT_FLAWS = ("float64-logprobs", "big-endian-ids")
FLAWS = (
    *VIEW_FLAWS,
    *GENERATE_FLAWS,
    *WIRE_FLAWS,
    *DESCRIBE_FLAWS,
    *RESULT_FLAWS,
    "unstable-identity",
    "long-errors",
)
LONG_LIMIT = 2
"""The prompt-token limit of ``long-errors``: the kit's prompt ('The sky is') is over it."""


class FlawedView:
    def __init__(self, view: Any, flaw: str) -> None:
        self._view = view
        self._flaw = flaw
        self.id = view.id

    def __getattr__(self, name: str) -> Any:
        return getattr(self._view, name)

    def logprob_of(self, prompt: str, completion: str) -> float:
        value = float(self._call("logprob_of", prompt, completion))
        if self._flaw == "nondeterministic":
            value *= 1 + random.uniform(-1e-12, 1e-12)
        return value

    def rolling_logprob(self, text: str) -> Any:
        self._limit(text)
        return self._view.rolling_logprob(text)

    def next_token_dist(self, prompt: str, *, top_k: int = 256) -> Any:
        dist = self._call("next_token_dist", prompt, top_k=top_k)
        if self._flaw == "wrong-tail" and dist.tail_logprob is not None:
            inside = float(np.exp(dist.logprobs.astype(np.float64)).sum())
            return replace(dist, tail_logprob=math.log(inside))
        if self._flaw == "unsorted-top-k":
            return replace(dist, token_ids=dist.token_ids[::-1], logprobs=dist.logprobs[::-1])
        return dist

    def generate(self, prompt: str, *, max_new_tokens: int, **sampling: Any) -> str:
        self._limit(prompt)
        if self._flaw == "too-many-tokens":
            max_new_tokens += 2
        text = str(self._view.generate(prompt, max_new_tokens=max_new_tokens, **sampling))
        return f"{prompt} {text}" if self._flaw == "echo-prompt" else text

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        self._limit(args[0])
        try:
            return getattr(self._view, method)(*args, **kwargs)
        except ValueError as exc:
            if self._flaw == "wrong-error-code":
                raise RuntimeError(f"model failed: {exc}") from None
            raise

    def _limit(self, prompt: str) -> None:
        """``long-errors``: refuse over ``LONG_LIMIT`` tokens, listing the whole vocabulary."""
        if self._flaw == "long-errors" and len(prompt.split()) > LONG_LIMIT:
            vocabulary = ", ".join(f"token {i} is 'w{i}'" for i in range(200))
            raise ValueError(f"this model accepts at most {LONG_LIMIT} tokens ({vocabulary})")


class FlawedBackend(DummyBackend):
    def __init__(self, flaw: str) -> None:
        super().__init__()
        self._flaw = flaw

    def cache_identity(self) -> str:
        if self._flaw == "unstable-identity":
            return f"dummy:{os.getpid()}"
        return super().cache_identity()

    @contextmanager
    def _flawed(self, view: AbstractContextManager[Any]) -> Iterator[FlawedView]:
        with view as inner:
            yield FlawedView(inner, self._flaw)

    def as_base(self) -> Any:
        return self._flawed(super().as_base())

    def as_finetuned(self) -> Any:
        return self._flawed(super().as_finetuned())

    def as_scaled_adapter(self, lam: float) -> Any:
        return self._flawed(super().as_scaled_adapter(lam))

    def as_null_adapter(
        self, seed: int, *, init_scale: float = 0.02, rank_scale: float = 1.0
    ) -> Any:
        return self._flawed(
            super().as_null_adapter(seed, init_scale=init_scale, rank_scale=rank_scale)
        )


def _wire_error(flaw: str, error: errors.WireError) -> errors.WireError:
    """The error as a flawed worker would put it on the wire."""
    if flaw == "probe-as-value-error" and error.exception_type.endswith(".ProbeError"):
        return replace(error, exception_type="builtins.ValueError")
    if flaw == "unqualified-error-type":
        return replace(error, exception_type=error.exception_type.rpartition(".")[2])
    if flaw == "attrs-not-json" and error.attrs_json != "{}":
        attrs = ",".join(f"{k}={v}" for k, v in json.loads(error.attrs_json).items())
        return replace(error, attrs_json=attrs)
    return error


def _patch_errors(flaw: str) -> None:
    """Every path that reduces an exception to a wire error (gRPC and frames) gets the flaw."""
    classify = errors.classify

    def flawed(exc: BaseException) -> errors.WireError:
        return _wire_error(flaw, classify(exc))

    errors.classify = flawed
    servicer.classify = flawed
    for module in (servicer, frames):
        module.report = lambda exc: flawed(exc)  # type: ignore[attr-defined]


def _patch_describe(flaw: str) -> None:
    describe = servicer.BackendServicer.describe

    def flawed(self: servicer.BackendServicer) -> pb.DescribeResponse:
        response = describe(self)
        if flaw == "no-loaded-spec":
            response.ClearField("loaded_spec")
        elif response.HasField("loaded_spec"):
            response.worker_kind += "-loaded"
        return response

    servicer.BackendServicer.describe = flawed  # type: ignore[method-assign]


def _patch_results(flaw: str) -> None:
    encode: Callable[..., pb.ScoreResponse] = servicer.result_to_proto

    def flawed(op: Any, value: Any, **kwargs: Any) -> pb.ScoreResponse:
        response = encode(op, value, **kwargs)
        if flaw == "float64-logprobs" and response.HasField("rolling"):
            wide = np.frombuffer(response.rolling.logprobs, "<f4").astype("<f8")
            response.rolling.logprobs = wide.tobytes()
        if flaw == "big-endian-ids" and response.HasField("dist"):
            swapped = np.frombuffer(response.dist.token_ids, "<i8").astype(">i8")
            response.dist.token_ids = swapped.tobytes()
        return response

    servicer.result_to_proto = flawed


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in FLAWS:
        sys.exit(f"usage: broken.py {{{','.join(FLAWS)}}}")
    chosen = sys.argv[1]
    if chosen in WIRE_FLAWS:
        _patch_errors(chosen)
    if chosen in DESCRIBE_FLAWS:
        _patch_describe(chosen)
    if chosen in RESULT_FLAWS:
        _patch_results(chosen)
    serve(FlawedBackend(chosen), worker_kind=f"broken-{chosen}")
