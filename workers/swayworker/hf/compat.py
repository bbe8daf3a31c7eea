"""Saying plainly when a model was saved by a transformers major this worker lacks,
or asks for a dtype this device's torch cannot compute.

Workers in different envs run different transformers majors, and files saved
by one are not always readable by the other. The known case: transformers 5
saves a fast tokenizer as ``tokenizer_class: TokenizersBackend``, a class
transformers 4 does not have, and its own error ("does not exist or is not
currently imported") does not say why. This turns such errors into ones that
name the cause and both fixes.
"""

from __future__ import annotations

from typing import Any

from swayworker.errors import BadSpec

TRANSFORMERS_5_TOKENIZER = "TokenizersBackend"


def explain(exc: Exception) -> ValueError | None:
    """A ``ValueError`` that explains ``exc`` when it is a known cross-major incompatibility."""
    if TRANSFORMERS_5_TOKENIZER not in str(exc):
        return None
    import transformers

    return ValueError(
        f"{exc} The tokenizer was saved by transformers 5 (tokenizer_class: "
        f"{TRANSFORMERS_5_TOKENIZER}), which this worker's transformers "
        f"{transformers.__version__} cannot load. Run this worker in an env with "
        'transformers>=5, or set "tokenizer_class": "PreTrainedTokenizerFast" in '
        "tokenizer_config.json (both majors load that)."
    )


_DTYPE_NAMES = {"Half": "fp16", "BFloat16": "bf16"}


def check_dtype_runs(model: Any, dtype: Any, device: str) -> None:
    """One forward pass of one token at Load: a dtype the device cannot compute is refused there.

    Some CPU builds of torch have no fp16 (or bf16) kernels for matmul and
    friends; the error they raise on the first scoring call
    (``"addmm_impl_cpu_" not implemented for 'Half'``) names neither the
    spec's ``dtype`` field nor the fix. Trying it once at Load turns that
    into a spec error naming both, before any probe has run.
    """
    import torch

    if dtype == torch.float32:
        return
    try:
        with torch.inference_mode():
            model(torch.zeros((1, 1), dtype=torch.long, device=device))
    except (RuntimeError, NotImplementedError) as exc:
        explained = explain_dtype(exc, device)
        if explained is None:
            raise
        raise explained from exc


def explain_dtype(exc: BaseException, device: str) -> BadSpec | None:
    """A spec error for a "not implemented for 'Half'/'BFloat16'" kernel error, else None."""
    text = str(exc)
    for torch_name, spec_name in _DTYPE_NAMES.items():
        if f"not implemented for '{torch_name}'" in text:
            import torch

            return BadSpec(
                f"dtype {spec_name} cannot run on {device} with this torch "
                f"({torch.__version__}): {text}. Set `dtype: fp32` on the model spec "
                "(or `auto`, which is fp32 on CPU), or run the worker on a device with "
                f"{spec_name} kernels."
            )
    return None
