"""A dtype the device's torch cannot compute is refused at Load, naming the dtype and the fix.

Some CPU builds of torch lack fp16 (or bf16) kernels; this machine's has
them (the model matrix scores fp16 and bf16 on CPU), so the kernel error is
reproduced by a stand-in model that raises exactly what such a build
raises, and the real check runs on a real model for the dtypes that work.
"""

from __future__ import annotations

from typing import Any

import pytest
from swayworker.errors import BadSpec
from swayworker.hf.compat import check_dtype_runs, explain_dtype

torch = pytest.importorskip("torch")

HALF_ERROR = "\"addmm_impl_cpu_\" not implemented for 'Half'"


class Raising:
    """A model whose forward pass raises ``error``; counts its calls."""

    def __init__(self, error: BaseException) -> None:
        self.error = error
        self.calls = 0

    def __call__(self, ids: Any) -> Any:
        self.calls += 1
        raise self.error


def test_a_missing_half_kernel_is_a_spec_error_naming_dtype_and_fix() -> None:
    model = Raising(RuntimeError(HALF_ERROR))
    with pytest.raises(BadSpec) as refused:
        check_dtype_runs(model, torch.float16, "cpu")
    message = str(refused.value)
    assert "dtype fp16 cannot run on cpu" in message and "dtype: fp32" in message
    assert HALF_ERROR in message and model.calls == 1


def test_bf16_is_named_too_and_other_errors_pass_through() -> None:
    bf16 = RuntimeError("\"LayerNormKernelImpl\" not implemented for 'BFloat16'")
    explained = explain_dtype(bf16, "cpu")
    assert explained is not None and "dtype bf16" in str(explained)
    other = Raising(RuntimeError("shape mismatch"))
    with pytest.raises(RuntimeError, match="shape mismatch"):
        check_dtype_runs(other, torch.float16, "cpu")


def test_fp32_is_not_probed() -> None:
    model = Raising(RuntimeError(HALF_ERROR))
    check_dtype_runs(model, torch.float32, "cpu")
    assert model.calls == 0


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_a_real_model_passes_in_a_dtype_this_cpu_runs(dtype: str) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=32,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
    )
    model = LlamaForCausalLM(config).to(getattr(torch, dtype)).eval()
    check_dtype_runs(model, getattr(torch, dtype), "cpu")
