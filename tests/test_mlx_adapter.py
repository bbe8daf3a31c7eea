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
    module_scaling,
    plan_adapter,
)
from swayworker.mlx.compat import DEFAULT, SHIMS, config_overrides, shim_for


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
    assert all(m.scaling == pytest.approx(2.0) for m in plan.modules)
    assert plan.saved == plan.base_weights == ()


def test_rslora_scales_by_the_square_root_of_the_rank(adapter: Path) -> None:
    edit_config(adapter, use_rslora=True)
    assert plan_adapter(adapter).scaling == pytest.approx(16 / np.sqrt(8))


def test_rank_and_alpha_patterns_give_each_module_its_own_scaling(adapter: Path) -> None:
    """PEFT's rule: a key matches a module path ending with it at a dot; first key wins."""
    edit_config(
        adapter,
        rank_pattern={"layers.1.self_attn.v_proj": 4, "v_proj": 2},
        alpha_pattern={"q_proj": 32},
        use_rslora=False,
    )
    scaling = {m.path: m.scaling for m in plan_adapter(adapter).modules}
    assert scaling["model.layers.0.self_attn.q_proj"] == pytest.approx(32 / 8)
    assert scaling["model.layers.0.self_attn.v_proj"] == pytest.approx(16 / 2)
    assert scaling["model.layers.1.self_attn.v_proj"] == pytest.approx(16 / 4)
    assert scaling["model.layers.0.self_attn.o_proj"] == pytest.approx(16 / 8)
    assert (
        module_scaling("model.layers.0.self_attn.xq_proj", {"r": 8, "alpha_pattern": {"q_proj": 1}})
        == 1.0
    )


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"use_dora": True}, "DoRA"),
        ({"bias": "all"}, "bias='all'"),
        ({"peft_type": "IA3"}, "IA3"),
        ({"layer_replication": [[0, 2]]}, "layer_replication"),
        ({"lora_bias": True}, "lora_bias"),
        ({"trainable_token_indices": [1, 2]}, "trainable_token_indices"),
        ({"target_parameters": ["experts.w1"]}, "target_parameters"),
    ],
)
def test_unconvertible_configs_are_refused_by_name(
    adapter: Path, changes: dict[str, Any], named: str
) -> None:
    edit_config(adapter, **changes)
    with pytest.raises(UnsupportedAdapter, match=named) as refused:
        plan_adapter(adapter)
    assert "hf worker" in str(refused.value) or named == "IA3"


def add_tensor(adapter: Path, name: str, value: Any) -> None:
    weights = adapter / "adapter_model.safetensors"
    tensors = load_file(str(weights))
    tensors[name] = value
    save_file(tensors, str(weights))


def test_dora_saved_modules_and_base_weights_are_planned(adapter: Path) -> None:
    prefix = "base_model.model.model."
    for layer in (0, 1):
        for proj in ("q_proj", "v_proj", "o_proj"):
            add_tensor(
                adapter,
                f"{prefix}layers.{layer}.self_attn.{proj}.lora_magnitude_vector",
                np.ones(64, dtype=np.float32),
            )
    add_tensor(adapter, "base_model.model.lm_head.weight", np.zeros((448, 64), np.float32))
    add_tensor(adapter, f"{prefix}embed_tokens.base_layer.weight", np.zeros((448, 64), np.float32))
    edit_config(adapter, use_dora=True, modules_to_save=["lm_head"])
    plan = plan_adapter(adapter)
    assert all(m.magnitude_key for m in plan.modules)
    assert [(t.path, t.param) for t in plan.saved] == [("lm_head", "weight")]
    assert [(t.path, t.param) for t in plan.base_weights] == [("model.embed_tokens", "weight")]


def test_a_magnitude_without_use_dora_is_refused(adapter: Path) -> None:
    name = "base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector"
    add_tensor(adapter, name, np.ones(64, dtype=np.float32))
    with pytest.raises(UnsupportedAdapter, match="does not say use_dora"):
        plan_adapter(adapter)


def test_unknown_tensors_are_refused(adapter: Path) -> None:
    add_tensor(adapter, "base_model.model.model.norm.weight", np.ones(64, dtype=np.float32))
    with pytest.raises(UnsupportedAdapter, match=r"model\.norm\.weight.*hf worker"):
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


def write_config(directory: Path, **config: Any) -> Path:
    (directory / "config.json").write_text(json.dumps(config))
    return directory


def test_transformers5_rope_parameters_are_lifted_for_mlx_lm(tmp_path: Path) -> None:
    rope = {"rope_theta": 500000.0, "rope_type": "llama3", "factor": 8.0}
    write_config(tmp_path, model_type="llama", rope_parameters=rope)
    assert config_overrides(tmp_path) == {
        "rope_theta": 500000.0,
        "rope_scaling": {"rope_type": "llama3", "type": "llama3", "factor": 8.0},
    }
    write_config(tmp_path, model_type="llama", rope_theta=1e4, rope_scaling=None)
    assert config_overrides(tmp_path) == {}


def test_phi3_partial_rotary_factor_is_lifted(tmp_path: Path) -> None:
    rope = {"rope_theta": 1e4, "rope_type": "default", "partial_rotary_factor": 0.75}
    write_config(tmp_path, model_type="phi3", rope_parameters=rope)
    assert config_overrides(tmp_path) == {"rope_theta": 1e4, "partial_rotary_factor": 0.75}


def test_gpt2_gets_n_ctx_and_its_module_names(tmp_path: Path) -> None:
    """transformers 5 drops n_ctx; mlx-lm's GPT-2 requires it (the issue's TypeError)."""
    write_config(tmp_path, model_type="gpt2", n_positions=1024)
    assert config_overrides(tmp_path) == {"n_ctx": 1024}
    write_config(tmp_path, model_type="gpt2", n_positions=1024, n_ctx=512)
    assert config_overrides(tmp_path) == {}
    shim = shim_for({"model_type": "gpt2"})
    assert shim.module_path("transformer.h.0.attn.c_attn") == "model.h.0.attn.c_attn"
    assert shim.weight_name("transformer.h.0.attn.c_attn.weight") == "h.0.attn.c_attn.weight"
    assert shim.weight_name("lm_head.weight") == "lm_head.weight"


def test_every_matrix_architecture_has_its_own_shim_row() -> None:
    from tests.model_matrix import ARCHS

    types = {name.split("-")[0] for name in ARCHS}
    assert types <= set(SHIMS), types - set(SHIMS)
    assert shim_for({"model_type": "llama"}).module_path("model.layers.0.q") == "model.layers.0.q"
    assert shim_for({"model_type": "something-new"}) is DEFAULT
