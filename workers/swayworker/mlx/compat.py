"""Model config fields that transformers 5 moved and mlx-lm does not read yet.

transformers 5 saves a Llama's rope settings as ``rope_parameters``
(``{"rope_theta": ..., "rope_type": ...}``) instead of the top-level
``rope_theta`` / ``rope_scaling`` that mlx-lm 0.32 reads. mlx-lm then falls
back to its default theta (10000) without a word, which is right only by
luck; any other theta would silently score a different model. The loader
passes these overrides to ``mlx_lm.load(model_config=...)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def config_overrides(base_dir: Path) -> dict[str, Any]:
    """``rope_theta`` / ``rope_scaling`` lifted out of ``rope_parameters``, if needed."""
    path = base_dir / "config.json"
    if not path.is_file():
        return {}
    config = json.loads(path.read_text())
    rope = config.get("rope_parameters")
    if not isinstance(rope, dict):
        return {}
    overrides: dict[str, Any] = {}
    if "rope_theta" not in config and "rope_theta" in rope:
        overrides["rope_theta"] = float(rope["rope_theta"])
    scaling = {k: v for k, v in rope.items() if k != "rope_theta"}
    if "rope_scaling" not in config and scaling.get("rope_type", "default") != "default":
        overrides["rope_scaling"] = scaling
    return overrides
