"""A worker with one deliberate contract mistake, to prove the conformance kit catches it.

``python broken.py FLAW`` serves the toy model of the dummy worker with
exactly one mistake, of the kind a worker author really makes:

* ``wrong-tail``: tail_logprob is log(mass inside the top-k), not outside it
* ``unsorted-top-k``: the top-k comes back in ascending order
* ``nondeterministic``: logprob_of wobbles in its last bits (like an unordered reduction)
* ``wrong-error-code``: a too-long prompt raises RuntimeError (INTERNAL), not ValueError
"""

from __future__ import annotations

import math
import random
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from typing import Any

import numpy as np
from swayworker import serve
from swayworker.dummy import DummyBackend

FLAWS = ("wrong-tail", "unsorted-top-k", "nondeterministic", "wrong-error-code")


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

    def next_token_dist(self, prompt: str, *, top_k: int = 256) -> Any:
        dist = self._call("next_token_dist", prompt, top_k=top_k)
        if self._flaw == "wrong-tail" and dist.tail_logprob is not None:
            inside = float(np.exp(dist.logprobs.astype(np.float64)).sum())
            return replace(dist, tail_logprob=math.log(inside))
        if self._flaw == "unsorted-top-k":
            return replace(dist, token_ids=dist.token_ids[::-1], logprobs=dist.logprobs[::-1])
        return dist

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return getattr(self._view, method)(*args, **kwargs)
        except ValueError as exc:
            if self._flaw == "wrong-error-code":
                raise RuntimeError(f"model failed: {exc}") from None
            raise


class FlawedBackend(DummyBackend):
    def __init__(self, flaw: str) -> None:
        super().__init__()
        self._flaw = flaw

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


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in FLAWS:
        sys.exit(f"usage: broken.py {{{','.join(FLAWS)}}}")
    serve(FlawedBackend(sys.argv[1]), worker_kind=f"broken-{sys.argv[1]}")
