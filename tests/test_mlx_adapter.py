"""What the MLX worker accepts from a PEFT adapter, checked without MLX installed.

The checks run before any model is loaded, in plain Python, so a user with
an adapter MLX cannot reproduce gets a message naming the feature rather
than a silently different model.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
from swayworker.hf.tiny import TinyModel
from swayworker.mlx.adapter import (
    UnsupportedAdapter,
    check_base,
    content_hash,
    plan_adapter,
)
from swayworker.mlx.compat import config_overrides


@pytest.fixture
def adapter(tiny_model: TinyModel, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_model.adapter_dir, tmp_path / "adapter"))


def edit_config(adapter: Path, **changes: Any) -> None:
    path = adapter / "adapter_config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def test_the_tiny_adapter_converts(adapter: Path) -> None:
    plan = plan_adapter(adapter)
    assert plan.rank == 8 and plan.scaling == pytest.approx(16 / 8)
    paths = {m.path for m in plan.modules}
    assert len(paths) == 6  # q, v, o in each of the two layers
    assert "model.layers.1.self_attn.v_proj" in paths


def test_rslora_scales_by_the_square_root_of_the_rank(adapter: Path) -> None:
    edit_config(adapter, use_rslora=True)
    assert plan_adapter(adapter).scaling == pytest.approx(16 / np.sqrt(8))


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"use_dora": True}, "DoRA"),
        ({"modules_to_save": ["lm_head"]}, "modules_to_save"),
        ({"bias": "lora_only"}, "bias='lora_only'"),
        ({"peft_type": "IA3"}, "IA3"),
        ({"rank_pattern": {"q_proj": 4}}, "rank_pattern"),
        ({"layer_replication": [[0, 2]]}, "layer_replication"),
    ],
)
def test_unconvertible_configs_are_refused_by_name(
    adapter: Path, changes: dict[str, Any], named: str
) -> None:
    edit_config(adapter, **changes)
    with pytest.raises(UnsupportedAdapter, match=named):
        plan_adapter(adapter)


def test_tensors_other_than_lora_a_b_are_refused(adapter: Path) -> None:
    weights = adapter / "adapter_model.safetensors"
    tensors = load_file(str(weights))
    tensors["base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector"] = np.ones(
        64, dtype=np.float32
    )
    save_file(tensors, str(weights))
    with pytest.raises(UnsupportedAdapter, match="lora_magnitude_vector"):
        plan_adapter(adapter)


def test_a_pickled_adapter_is_refused_with_the_fix(adapter: Path) -> None:
    (adapter / "adapter_model.safetensors").rename(adapter / "adapter_model.bin")
    with pytest.raises(UnsupportedAdapter, match="safe_serialization=True"):
        plan_adapter(adapter)


def test_a_directory_without_config_is_not_an_adapter(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedAdapter, match=r"adapter_config\.json"):
        plan_adapter(tmp_path)


def test_a_bitsandbytes_base_is_refused_as_qlora(tmp_path: Path) -> None:
    config = {"quantization_config": {"quant_method": "bitsandbytes", "load_in_4bit": True}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedAdapter, match="4-bit bitsandbytes-quantized"):
        check_base(tmp_path)


def test_the_cache_key_follows_the_content(adapter: Path, tiny_model: TinyModel) -> None:
    key = content_hash(plan_adapter(adapter))
    assert key == content_hash(plan_adapter(tiny_model.adapter_dir))  # same bytes, other path
    edit_config(adapter, lora_alpha=32)
    assert content_hash(plan_adapter(adapter)) != key


def test_transformers5_rope_parameters_are_lifted_for_mlx_lm(tmp_path: Path) -> None:
    config = {"rope_parameters": {"rope_theta": 500000.0, "rope_type": "llama3", "factor": 8.0}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert config_overrides(tmp_path) == {
        "rope_theta": 500000.0,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0},
    }
    (tmp_path / "config.json").write_text(json.dumps({"rope_theta": 1e4, "rope_scaling": None}))
    assert config_overrides(tmp_path) == {}
