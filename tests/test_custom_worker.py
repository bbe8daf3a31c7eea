"""The custom worker: user classes by entry_point, with sway's errors and protocols."""

from __future__ import annotations

import pytest
import swayhost
from dlm_sway.backends.dummy import DummyDifferentialBackend
from dlm_sway.core.errors import SpecValidationError
from dlm_sway.core.model import ModelSpec as SwayModelSpec
from dlm_sway.core.scoring import (
    DifferentialBackend,
    NullCalibratedBackend,
    PreflightCheckable,
    RollingLogprob,
    ScalableDifferentialBackend,
    TokenDist,
)
from swayhost import ModelSpec

from tests.helpers import plugin_worker
from tests.plugins.user_backends import canned


def custom(entry_point: str | None) -> ModelSpec:
    return ModelSpec(kind="custom", base="toy", entry_point=entry_point, worker=plugin_worker())


def test_sway_dummy_class_gives_the_in_process_answers() -> None:
    base, ft = canned()
    reference = DummyDifferentialBackend(base=base, ft=ft)
    with swayhost.build(custom("user_backends:SwayDummy")) as remote:
        for enter in ("as_base", "as_finetuned"):
            with getattr(reference, enter)() as ref, getattr(remote, enter)() as view:
                for prompt, completion in [("The sky is", " blue"), ("The sky is", " green")]:
                    assert view.logprob_of(prompt, completion) == ref.logprob_of(prompt, completion)
                assert view.generate("q", max_new_tokens=4) == ref.generate("q", max_new_tokens=4)
                got, want = view.rolling_logprob("a b c"), ref.rolling_logprob("a b c")
                assert isinstance(got, RollingLogprob)
                assert got.token_ids.tolist() == want.token_ids.tolist()
                assert got.logprobs.tobytes() == want.logprobs.tobytes()
                got_d, want_d = view.next_token_dist("p"), ref.next_token_dist("p")
                assert isinstance(got_d, TokenDist)
                assert got_d.logprobs.tobytes() == want_d.logprobs.tobytes()
                assert got_d.tail_logprob == want_d.tail_logprob
        with reference.as_scaled_adapter(0.25) as ref, remote.as_scaled_adapter(0.25) as view:
            assert view.logprob_of("The sky is", " blue") == ref.logprob_of("The sky is", " blue")
        with reference.as_null_adapter(3) as ref, remote.as_null_adapter(3) as view:
            assert view.next_token_dist("p").logprobs.tobytes() == (
                ref.next_token_dist("p").logprobs.tobytes()
            )
        assert remote.preflight_finite_check() == reference.preflight_finite_check()
        assert remote.__sway_protocols__ == (
            "DifferentialBackend",
            "NullCalibratedBackend",
            "ScalableDifferentialBackend",
        )
        # sway's dummy raises KeyError for a prompt it has no canned answer for.
        with remote.as_base() as view, pytest.raises(KeyError):
            view.generate("unknown prompt", max_new_tokens=2)


def test_accepts_a_dlm_sway_model_spec_as_is() -> None:
    spec = SwayModelSpec(kind="custom", base="toy", entry_point="user_backends:MinimalBackend")
    with swayhost.build(spec, worker=plugin_worker()) as remote, remote.as_finetuned() as view:
        assert view.logprob_of("p", "abc") == -2.0


def test_minimal_class_satisfies_only_differential() -> None:
    with swayhost.build(custom("user_backends:MinimalBackend")) as remote:
        assert isinstance(remote, DifferentialBackend)
        assert not isinstance(remote, ScalableDifferentialBackend)
        assert not isinstance(remote, NullCalibratedBackend)
        assert not isinstance(remote, PreflightCheckable)
        assert remote.__sway_protocols__ == ("DifferentialBackend",)
        with remote.as_base() as view:
            assert view.generate("abc", max_new_tokens=1) == "cba"
            with pytest.raises(NotImplementedError):
                view.rolling_logprob("x")


SEED_ERRORS = [
    (None, "kind='custom' requires an entry_point of the form 'pkg.module:ClassName'"),
    ("user_backends.MinimalBackend", "entry_point must be 'pkg.module:ClassName', got"),
    (":MinimalBackend", "entry_point must be 'pkg.module:ClassName', got ':MinimalBackend'"),
    ("no_such_module_xyz:Cls", "custom backend: cannot import module 'no_such_module_xyz'"),
    ("user_backends:Missing", "custom backend: module 'user_backends' has no attribute 'Missing'"),
    ("user_backends:WrongSignature", "constructor signature mismatch"),
    (
        "user_backends:NotABackend",
        "does not satisfy DifferentialBackend (needs as_base() and "
        "as_finetuned() context managers)",
    ),
]


@pytest.mark.parametrize(("entry_point", "message"), SEED_ERRORS)
def test_seed_errors_reach_the_caller(entry_point: str | None, message: str) -> None:
    with pytest.raises(SpecValidationError) as info:
        swayhost.build(custom(entry_point))
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (ModelSpec(kind="hf", base="m"), "hf backend requires an adapter path"),
        (ModelSpec(kind="mlx", base="m"), "mlx backend requires an adapter path"),
        (ModelSpec(kind="api", base="m"), "api backend requires `endpoint:` on the ModelSpec"),
        (ModelSpec(kind="dummy", base="m"), "kind='dummy' backends must be constructed directly"),
        (ModelSpec(kind="vllm", base="m"), "unknown backend kind: 'vllm'"),
    ],
)
def test_dispatch_errors_match_the_seed(spec: ModelSpec, message: str) -> None:
    with pytest.raises(SpecValidationError, match=message.replace("(", r"\(").replace("`", ".")):
        swayhost.build(spec)
