"""Bad arguments to a backend: what a user passes, and what the host tells them.

Each test is one mistake. Where in-process dlm-sway raises, the host raises
the same exception type (and, for sway's own errors, the same words),
compared here against sway's real HF backend on the tiny model; where sway
is silent or its error names nothing, the host checks the argument before
anything is encoded and names it. ``tests/mistakes/README.md`` lists them all.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import swayhost
from dlm_sway.backends._instrumentation import BackendStats as SwayBackendStats
from dlm_sway.backends.hf import HuggingFaceDifferentialBackend
from dlm_sway.core.errors import ProbeError
from dlm_sway.core.model import ModelSpec as SwayModelSpec
from dlm_sway.suite.runner import _snapshot_backend_stats
from swayhost.arguments import described
from swayworker.hf.tiny import TinyModel

from tests.helpers import plugin_worker, spawn_dummy

pytestmark = pytest.mark.slow


def _sway_spec(tiny: TinyModel) -> SwayModelSpec:
    return SwayModelSpec(
        kind="hf", base=str(tiny.base_dir), adapter=tiny.adapter_dir, dtype="fp32", device="cpu"
    )


@pytest.fixture(scope="module")
def reference(tiny_model: TinyModel) -> Iterator[HuggingFaceDifferentialBackend]:
    """sway's own HF backend, in this process: the reference for types and words."""
    backend = HuggingFaceDifferentialBackend(
        base_spec=_sway_spec(tiny_model), adapter_path=tiny_model.adapter_dir
    )
    yield backend
    backend.close()


@pytest.fixture(scope="module")
def remote(tiny_model: TinyModel) -> Iterator[swayhost.RemoteBackend]:
    with swayhost.build(_sway_spec(tiny_model)) as backend:
        yield backend


@pytest.fixture(scope="module")
def dummy() -> Iterator[swayhost.RemoteBackend]:
    backend = spawn_dummy()
    yield backend
    backend.close()


def _raised(call: Callable[[], Any]) -> BaseException:
    with pytest.raises(Exception) as info:
        call()
    return info.value


# -- sway's own errors, in sway's words ---------------------------------------

EMPTY_COMPLETION = (
    "probe 'logprob_of': completion tokenized to zero tokens (prompt='hello', completion='')"
)


def test_empty_completion_is_swaysprobe_error_in_swayswords(
    reference: HuggingFaceDifferentialBackend, remote: swayhost.RemoteBackend
) -> None:
    with reference.as_base() as view:
        want = _raised(lambda: view.logprob_of("hello", ""))
    with remote.as_base() as view:
        got = _raised(lambda: view.logprob_of("hello", ""))
    assert type(want) is ProbeError
    assert isinstance(got, ProbeError)
    assert str(got) == str(want) == EMPTY_COMPLETION


def test_empty_completion_on_a_backend_without_its_own_check(
    dummy: swayhost.RemoteBackend,
) -> None:
    """sway's canned dummy returns -10.0; the worker SDK refuses it after, in sway's words."""
    spec = swayhost.ModelSpec(
        kind="custom", base="toy", entry_point="user_backends:SwayDummy", worker=plugin_worker()
    )
    with swayhost.build(spec) as custom, custom.as_base() as view:
        got = _raised(lambda: view.logprob_of("hello", ""))
        (item,) = view.logprob_of_many([("hello", "")], return_exceptions=True)
    assert isinstance(got, ProbeError) and isinstance(item, ProbeError)
    assert str(got) == str(item) == EMPTY_COMPLETION
    with dummy.as_base() as view:  # the dummy worker checks itself, in the same words
        assert str(_raised(lambda: view.logprob_of("hello", ""))) == EMPTY_COMPLETION


# -- arguments of the wrong type: sway's type, the argument's name -------------

TYPE_MISTAKES: list[tuple[str, Callable[[Any], Any], str]] = [
    (
        "top_k=1.5",
        lambda v: v.next_token_dist("hi", top_k=1.5),
        "top_k must be an int, not float (1.5)",
    ),
    (
        "top_k='3'",
        lambda v: v.next_token_dist("hi", top_k="3"),
        "top_k must be an int, not str ('3')",
    ),
    (
        "top_k=True",
        lambda v: v.next_token_dist("hi", top_k=True),
        "top_k must be an int, not bool (True)",
    ),
    (
        "completion=None",
        lambda v: v.logprob_of("hi", None),
        "completion must be a str, not NoneType",
    ),
    (
        "completion=b'x'",
        lambda v: v.logprob_of("hi", b"x"),
        "completion must be a str, not bytes (b'x'): decode it first, e.g. value.decode('utf-8')",
    ),
    (
        "max_new_tokens='2'",
        lambda v: v.generate("hi", max_new_tokens="2"),
        "max_new_tokens must be an int, not str ('2')",
    ),
    (
        "temperature='x'",
        lambda v: v.generate("hi", max_new_tokens=2, temperature="x"),
        "temperature must be a float, not str ('x')",
    ),
]


@pytest.mark.parametrize(
    ("label", "call", "message"), TYPE_MISTAKES, ids=[m[0] for m in TYPE_MISTAKES]
)
def test_wrong_type_is_swaystype_and_names_the_argument(
    reference: HuggingFaceDifferentialBackend,
    remote: swayhost.RemoteBackend,
    label: str,
    call: Callable[[Any], Any],
    message: str,
) -> None:
    with reference.as_base() as view:
        want = _raised(lambda: call(view))
    with remote.as_base() as view:
        got = _raised(lambda: call(view))
    assert type(want) is TypeError, f"in process {label} raised {want!r}"
    assert type(got) is TypeError
    assert str(got) == message


PROMPT_MISTAKES: list[tuple[str, Callable[[Any], Any], str]] = [
    ("prompt=None", lambda v: v.next_token_dist(None), "prompt must be a str, not NoneType"),
    ("prompt=123", lambda v: v.logprob_of(123, " x"), "prompt must be a str, not int (123)"),
    (
        "prompt=b'hi'",
        lambda v: v.next_token_dist(b"hi"),
        "prompt must be a str, not bytes (b'hi'): decode it first, e.g. value.decode('utf-8')",
    ),
    ("text=None", lambda v: v.rolling_logprob(None), "text must be a str, not NoneType"),
    (
        "generate prompt=None",
        lambda v: v.generate(None, max_new_tokens=2),
        "prompt must be a str, not NoneType",
    ),
    (
        "max_new_tokens=1.5",
        lambda v: v.generate("hi", max_new_tokens=1.5),
        "max_new_tokens must be an int, not float (1.5)",
    ),
]


@pytest.mark.parametrize(
    ("label", "call", "message"), PROMPT_MISTAKES, ids=[m[0] for m in PROMPT_MISTAKES]
)
def test_wrong_type_that_sway_misreports_is_a_type_error_naming_it(
    dummy: swayhost.RemoteBackend, label: str, call: Callable[[Any], Any], message: str
) -> None:
    """In process these fail deep in the tokenizer (AttributeError, ValueError) or pass."""
    with dummy.as_base() as view:
        got = _raised(lambda: call(view))
    assert type(got) is TypeError, label
    assert str(got) == message


def test_huge_top_k_returns_the_whole_vocabulary_as_in_process(
    reference: HuggingFaceDifferentialBackend, remote: swayhost.RemoteBackend
) -> None:
    with reference.as_base() as view:
        want = view.next_token_dist("The river", top_k=2**40)
    with remote.as_base() as view:
        got = view.next_token_dist("The river", top_k=2**40)
    assert got.token_ids.tolist() == want.token_ids.tolist()
    assert got.vocab_size == want.vocab_size and got.tail_logprob is want.tail_logprob is None


def test_seed_out_of_range_names_it(dummy: swayhost.RemoteBackend) -> None:
    with dummy.as_base() as view:
        got = _raised(lambda: view.generate("hi", max_new_tokens=2, seed=2**70))
    assert type(got) is ValueError
    assert str(got) == (
        "seed must be between -9223372036854775808 and 9223372036854775807,"
        " got 1180591620717411303424"
    )


# -- views --------------------------------------------------------------------


@pytest.mark.parametrize("lam", [float("nan"), float("inf"), float("-inf")])
def test_scaled_adapter_of_nan_or_inf_is_refused(dummy: swayhost.RemoteBackend, lam: float) -> None:
    got = _raised(lambda: dummy.as_scaled_adapter(lam))
    assert type(got) is ValueError
    assert str(got) == f"lam must be finite, got {lam!r}: every score of such a view would be NaN"


def test_scaled_adapter_of_a_string_is_a_type_error(
    reference: HuggingFaceDifferentialBackend, dummy: swayhost.RemoteBackend
) -> None:
    def score(backend: Any) -> Any:
        with backend.as_scaled_adapter("x") as view:
            return view.logprob_of("hi", " there")

    assert type(_raised(lambda: score(reference))) is TypeError
    got = _raised(lambda: score(dummy))
    assert type(got) is TypeError
    assert str(got) == "lam must be a float, not str ('x')"


def test_null_adapter_of_nan_init_scale_is_refused(dummy: swayhost.RemoteBackend) -> None:
    got = _raised(lambda: dummy.as_null_adapter(1, init_scale=float("nan")))
    assert type(got) is ValueError
    assert str(got) == "init_scale must be finite, got nan: every score of such a view would be NaN"


def test_null_adapter_of_a_string_rank_scale_names_it(dummy: swayhost.RemoteBackend) -> None:
    got = _raised(lambda: dummy.as_null_adapter(1, rank_scale="x"))
    assert type(got) is TypeError
    assert str(got) == "rank_scale must be a float, not str ('x')"


# -- specs and options -----------------------------------------------------------


@pytest.mark.parametrize("base", [123, None, Path("/models/x")])
def test_spec_base_that_is_not_a_str(base: Any) -> None:
    with pytest.raises(ValueError):  # sway's pydantic ValidationError is a ValueError
        SwayModelSpec(kind="hf", base=base)
    with pytest.raises(ValueError) as info:
        swayhost.ModelSpec(kind="hf", base=base)
    assert str(info.value) == f"ModelSpec.base must be a str, not {described(base)}"


def test_worker_options_of_the_wrong_type() -> None:
    with pytest.raises(TypeError) as timeout:
        swayhost.WorkerOptions(startup_timeout="10")
    with pytest.raises(TypeError) as cache:
        swayhost.WorkerOptions(cache_bytes=1.5)
    assert str(timeout.value) == "WorkerOptions.startup_timeout must be a float, not str ('10')"
    assert str(cache.value) == "WorkerOptions.cache_bytes must be an int, not float (1.5)"


# -- batches: a bad item fails alone -------------------------------------------


def test_bad_item_in_a_batch_fails_alone(dummy: swayhost.RemoteBackend) -> None:
    pairs: list[Any] = [("a b", " c"), (None, " c"), "not a pair", ("x y", " z")]
    with dummy.as_base() as view:
        got = view.logprob_of_many(pairs, return_exceptions=True)
        singles = [view.logprob_of("a b", " c"), view.logprob_of("x y", " z")]
        with pytest.raises(TypeError, match=r"^prompt of pairs\[1\] must be a str"):
            view.logprob_of_many(pairs)
        dists = view.next_token_dist_many(["a", None, b"c"], top_k=3, return_exceptions=True)
        texts = view.rolling_logprob_many([123, "a b"], return_exceptions=True)
    assert [got[0], got[3]] == singles
    assert type(got[1]) is TypeError
    assert str(got[1]) == "prompt of pairs[1] must be a str, not NoneType"
    assert type(got[2]) is TypeError
    assert str(got[2]) == "pairs[2] must be a (prompt, completion) pair, not str ('not a pair')"
    assert dists[0].token_ids.size == 3
    assert str(dists[1]) == "prompts[1] must be a str, not NoneType"
    assert str(dists[2]).startswith("prompts[2] must be a str, not bytes (b'c'): decode it")
    assert str(texts[0]) == "texts[0] must be a str, not int (123)"
    assert texts[1].num_tokens > 0


# -- reports: backend_stats ------------------------------------------------------


def test_backend_stats_carry_swayskeys(
    reference: HuggingFaceDifferentialBackend, tiny_model: TinyModel
) -> None:
    """sway's runner fills a report's ``backend_stats`` from ``backend._inst``."""
    from swayhost.sway import HF

    hosted = HF(base_spec=_sway_spec(tiny_model), adapter_path=tiny_model.adapter_dir)
    try:
        for backend in (reference, hosted):
            with backend.as_base() as view:
                view.next_token_dist("The river", top_k=5)
                view.next_token_dist("The river", top_k=5)
        want, got = _snapshot_backend_stats(reference), _snapshot_backend_stats(hosted)
    finally:
        hosted.close()
    assert list(got) == list(want) == list(SwayBackendStats().to_dict())
    assert got["forward_passes"] == 1 and got["cache_hits"] == 1 and got["cache_misses"] == 1
    assert got["hit_rate"] == 0.5 and got["scoring_wall_s"] > 0
