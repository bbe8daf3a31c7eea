"""Every error the host raises is a ``SwayHostError``, and keeps the class callers expect.

No worker runs here: the bad specs are refused by ``build`` before any
process starts, and worker errors are rebuilt from what the wire carries.
"""

from __future__ import annotations

import pickle
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import swayhost
from swayhost.translate import rebuild_exception

BAD_SPECS = [
    pytest.param(swayhost.ModelSpec(base="m", kind="custom", entry_point="no-colon"), id="entry"),
    pytest.param(swayhost.ModelSpec(base="m", kind="hf"), id="hf-adapter"),
    pytest.param(swayhost.ModelSpec(base="m", kind="mlx"), id="mlx-adapter"),
    pytest.param(swayhost.ModelSpec(base="m", kind="api"), id="api-endpoint"),
    pytest.param(swayhost.ModelSpec(base="m", kind="dummy"), id="dummy"),
    pytest.param(swayhost.ModelSpec(base="m", kind="nope"), id="kind"),
]


@pytest.fixture
def without_sway(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """dlm-sway made unimportable, as on a machine that does not have it."""
    for name in [m for m in sys.modules if m == "dlm_sway" or m.startswith("dlm_sway.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "dlm_sway", None)  # type: ignore[arg-type]
    yield


@pytest.mark.parametrize("spec", BAD_SPECS)
def test_bad_specs_are_host_errors_without_sway(
    spec: swayhost.ModelSpec, without_sway: None
) -> None:
    with pytest.raises(swayhost.SwayHostError) as caught:
        swayhost.build(spec)
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, swayhost.WorkerBadSpec)


@pytest.mark.parametrize("spec", BAD_SPECS)
def test_bad_specs_are_also_sways_error_with_sway(spec: swayhost.ModelSpec) -> None:
    from dlm_sway.core.errors import SpecValidationError

    with pytest.raises(SpecValidationError) as caught:
        swayhost.build(spec)
    assert isinstance(caught.value, swayhost.SwayHostError)
    assert type(caught.value).__name__ == "SpecValidationError"


@pytest.mark.parametrize(
    ("exception_type", "reason", "also"),
    [
        ("builtins.ValueError", "ERROR_REASON_BAD_ARGUMENT", ValueError),
        ("builtins.MemoryError", "ERROR_REASON_OUT_OF_MEMORY", swayhost.WorkerOutOfMemory),
        ("builtins.KeyError", "ERROR_REASON_INTERNAL", KeyError),
        ("builtins.FileNotFoundError", "ERROR_REASON_INTERNAL", OSError),
        ("dlm_sway.core.errors.SpecValidationError", "ERROR_REASON_BAD_SPEC", ValueError),
        ("torch.OutOfMemoryError", "ERROR_REASON_OUT_OF_MEMORY", MemoryError),
        ("some.module.Unknown", "ERROR_REASON_UNSUPPORTED", NotImplementedError),
    ],
)
def test_worker_errors_keep_their_class_and_are_host_errors(
    exception_type: str, reason: str, also: type[Exception]
) -> None:
    error = rebuild_exception(
        reason=reason,
        message="it broke",
        exception_type=exception_type,
        attrs_json='{"detail": 3}',
        hint="try this",
        worker="w1",
    )
    assert isinstance(error, swayhost.WorkerError)
    assert isinstance(error, also)
    assert error.args == ("it broke",)
    assert error.worker == "w1"
    if not exception_type.startswith(("torch.", "some.")):
        assert type(error).__name__ == exception_type.rpartition(".")[2]
        assert error.detail == 3  # type: ignore[attr-defined]
    assert any("try this" in note for note in error.__notes__)
    again = pickle.loads(pickle.dumps(error))
    assert again.args == ("it broke",)


def test_host_errors_users_catch_are_exported() -> None:
    for name in ("ConfigError", "EnvError", "WorkerOutOfMemory", "WorkerBadSpec"):
        cls = getattr(swayhost, name)
        assert issubclass(cls, swayhost.SwayHostError)


def test_the_tree_in_the_docstring_names_every_error() -> None:
    from swayhost import errors

    doc = errors.__doc__ or ""
    for name, value in vars(errors).items():
        if isinstance(value, type) and issubclass(value, swayhost.SwayHostError):
            assert f" {name}" in doc, f"{name} is missing from the exception tree"


def test_missing_adapter_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(swayhost.SwayHostError, match="requires an adapter path"):
        swayhost.build(swayhost.ModelSpec(base=str(tmp_path), kind="hf"))
