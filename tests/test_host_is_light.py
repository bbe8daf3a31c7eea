"""The host never imports torch, transformers, peft or mlx; nor ray or cryptography unasked."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "transformers", "peft", "mlx", "mlx_lm", "ray", "cryptography")

PROGRAM = f"""
import sys
import swayhost, swayhost.cli
backend = swayhost.spawn(swayhost.ModelSpec(kind="dummy", base="toy"))
with backend.as_base() as view:
    view.logprob_of("a b", " c")
    view.next_token_dist("a b", top_k=4)
backend.close()
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
print(",".join(loaded))
"""


def test_host_imports_no_ml_framework() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "", f"the host imported: {out.stdout.strip()}"


def test_import_swayhost_leaves_the_env_installers_unloaded() -> None:
    """They (and packaging's parser) load when a worker declares an environment, not before."""
    program = (
        "import sys, swayhost; "
        "print(','.join(sorted(m for m in sys.modules "
        "if m.startswith(('swayhost.envs', 'packaging', 'importlib.metadata')))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "", f"import swayhost loaded: {out.stdout.strip()}"
