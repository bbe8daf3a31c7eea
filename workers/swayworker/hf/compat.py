"""Saying plainly when a model was saved by a transformers major this worker lacks.

Workers in different envs run different transformers majors, and files saved
by one are not always readable by the other. The known case: transformers 5
saves a fast tokenizer as ``tokenizer_class: TokenizersBackend``, a class
transformers 4 does not have, and its own error ("does not exist or is not
currently imported") does not say why. This turns such errors into ones that
name the cause and both fixes.
"""

from __future__ import annotations

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
