"""Files and folders that are missing, corrupt or unwritable: the message names them.

Where in-process dlm-sway fails too, the exception keeps sway's type (compared
on the tiny model); the words say which file and what to do.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import swayhost
import yaml
from dlm_sway.backends.hf import HuggingFaceDifferentialBackend
from dlm_sway.core.model import ModelSpec as SwayModelSpec
from swayhost.errors import JournalError
from swayworker.hf.tiny import TinyModel

from tests.helpers import spawn_dummy
from tests.mistakes.test_cli import unwritable, unwritable_message

pytestmark = pytest.mark.slow


def _raised(call: Callable[[], Any]) -> BaseException:
    with pytest.raises(Exception) as info:
        backend = call()
        backend.close()
    return info.value


def _both(base: str, adapter: Path) -> tuple[BaseException, BaseException]:
    """What sway's HF backend raises in process, and what the host raises, for one spec."""
    spec = SwayModelSpec(kind="hf", base=base, adapter=adapter, dtype="fp32", device="cpu")
    in_process = _raised(
        lambda: HuggingFaceDifferentialBackend(base_spec=spec, adapter_path=adapter)
    )
    return in_process, _raised(lambda: swayhost.build(spec))


def test_base_folder_that_does_not_exist(tiny_model: TinyModel, tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-model")
    want, got = _both(missing, tiny_model.adapter_dir)
    assert type(want) is OSError  # sway: "Repo id must be in the form 'repo_name' ..."
    assert isinstance(got, OSError)
    assert str(got) == (
        f"base model {missing!r} does not exist: there is no such folder. Give the folder of a"
        " saved model, or a Hugging Face repo id such as 'org/name'"
    )


def test_corrupt_adapter_config(tiny_model: TinyModel, tmp_path: Path) -> None:
    adapter = tmp_path / "adapter"
    shutil.copytree(tiny_model.adapter_dir, adapter)
    config = adapter / "adapter_config.json"
    config.write_text('{\n  "peft_type": \n', encoding="utf-8")
    want, got = _both(str(tiny_model.base_dir), adapter)
    assert isinstance(want, ValueError)  # sway: json's "Expecting value: line 3 column 1"
    assert isinstance(got, ValueError)
    assert str(got) == (
        f"adapter config {config} is not valid JSON (Expecting value: line 3 column 1"
        " (char 18)); fix it, or save the adapter again (PEFT's save_pretrained writes it)"
    )


def test_journal_in_a_folder_that_does_not_exist(tmp_path: Path) -> None:
    journal = tmp_path / "no-such-folder" / "run.journal"
    with pytest.raises(JournalError) as info:
        spawn_dummy(journal=journal).close()
    assert str(info.value) == (
        f"journal {journal}: its folder {journal.parent} does not exist; create it"
        f" (mkdir -p {journal.parent}) or put the journal in an existing folder"
    )


def test_sway_run_with_an_environment_and_an_unwritable_cache(
    tiny_model: TinyModel, tmp_path: Path
) -> None:
    """``sway run`` prints it as a spec error, one line, instead of a PermissionError."""
    from tests.test_sway_run import ENTRY_POINT, run_sway, sway_yaml

    config = tmp_path / "swayhost.yaml"
    config.write_text(
        yaml.safe_dump({"workers": {"hf": {"environment": {"inherit": True}}}}), encoding="utf-8"
    )
    cache = unwritable(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "SWAYHOST_CACHE_DIR"}
    env |= {"SWAYHOST_CONFIG": str(config), "XDG_CACHE_HOME": str(cache)}
    spec = sway_yaml(tiny_model, {"kind": "custom", "entry_point": ENTRY_POINT})
    run = run_sway(spec, tmp_path / "run", env)
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr and "PermissionError" not in run.stderr
    message = unwritable_message(cache / "sway-plugin-host" / "envs").removeprefix("error: ")
    assert message in " ".join(run.stderr.split()), run.stderr


@pytest.mark.timeout(900)
def test_mlx_worker_names_the_same_files(
    tiny_model: TinyModel, mlx_python: Path, tmp_path: Path
) -> None:
    """The MLX worker is a sibling of the HF one: the same two mistakes, the same words."""
    adapter = tmp_path / "adapter"
    shutil.copytree(tiny_model.adapter_dir, adapter)
    config = adapter / "adapter_config.json"
    config.write_text("{", encoding="utf-8")
    worker = swayhost.WorkerOptions(python=str(mlx_python))
    missing = str(tmp_path / "no-such-model")

    def mlx(base: str, adapter: Path) -> BaseException:
        spec = swayhost.ModelSpec(kind="mlx", base=base, adapter=adapter, worker=worker)
        return _raised(lambda: swayhost.build(spec))

    no_base = mlx(missing, tiny_model.adapter_dir)
    assert isinstance(no_base, OSError)
    assert str(no_base).startswith(f"base model {missing!r} does not exist: there is no such")
    corrupt = mlx(str(tiny_model.base_dir), adapter)
    assert isinstance(corrupt, ValueError)
    assert str(corrupt).startswith(f"adapter config {config} is not valid JSON (Expecting")


def test_detached_worker_with_an_unwritable_state_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its record cannot be kept: the state folder is named before any worker starts."""
    from swayhost.errors import CacheError

    state = unwritable(tmp_path)
    monkeypatch.delenv("SWAYHOST_STATE_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    worker = swayhost.WorkerOptions(detach=True, name="mistakes-state")
    with pytest.raises(CacheError) as info:
        swayhost.spawn(swayhost.ModelSpec(kind="dummy", base="toy", worker=worker))
    folder = state / "sway-plugin-host" / "detached"
    assert str(info.value) == unwritable_message(folder).removeprefix("error: ").replace(
        "SWAYHOST_CACHE_DIR (or XDG_CACHE_HOME)", "SWAYHOST_STATE_DIR (or XDG_STATE_HOME)"
    )
