"""``buf breaking`` guards the contract: a renumbered field is caught, a new field is not.

Also the ``make buf-breaking`` script itself, in throwaway git repositories:
with no history it has nothing to compare and passes; once a commit
renumbers a field it fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BUF = ROOT / "node_modules" / ".bin" / "buf"
SCRIPT = ROOT / "tools" / "buf-breaking.sh"
CONTRACT = Path("proto/swayplugin/v1/backend.proto")
RENUMBER = ("  int32 top_k = 2;", "  int32 top_k = 6;")
ADD_FIELD = ("  string completion = 2;\n", "  string completion = 2;\n  bool echo = 3;\n")


@pytest.fixture(autouse=True)
def _buf() -> None:
    if not BUF.exists():
        pytest.fail("buf is not installed: run `make test` (or `npm ci` at the top level)")


def contract_copy(folder: Path, edit: tuple[str, str] | None = None) -> Path:
    """proto/ and buf.yaml copied into ``folder``, with one textual edit applied."""
    shutil.copytree(ROOT / "proto", folder / "proto")
    shutil.copy(ROOT / "buf.yaml", folder / "buf.yaml")
    if edit is not None:
        path = folder / CONTRACT
        text = path.read_text(encoding="utf-8")
        assert edit[0] in text
        path.write_text(text.replace(edit[0], edit[1]), encoding="utf-8")
    return folder


def buf_breaking(new: Path, old: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BUF), "breaking", str(new), "--against", str(old)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_renumbering_a_field_is_caught(tmp_path: Path) -> None:
    old = contract_copy(tmp_path / "old")
    out = buf_breaking(contract_copy(tmp_path / "new", RENUMBER), old)
    assert out.returncode != 0
    assert "top_k" in out.stdout and "NextTokenDistOp" in out.stdout


def test_adding_a_field_is_allowed(tmp_path: Path) -> None:
    old = contract_copy(tmp_path / "old")
    out = buf_breaking(contract_copy(tmp_path / "new", ADD_FIELD), old)
    assert out.returncode == 0, out.stdout + out.stderr


def git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        timeout=60,
    )


def test_make_target_compares_with_the_parent_commit(tmp_path: Path) -> None:
    repo = contract_copy(tmp_path / "repo")
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "contract")

    def make_buf_breaking() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["sh", str(SCRIPT)],
            cwd=repo,
            env={**os.environ, "BUF": str(BUF)},
            capture_output=True,
            text=True,
            timeout=120,
        )

    first = make_buf_breaking()
    assert first.returncode == 0 and "nothing to check" in first.stdout

    path = repo / CONTRACT
    path.write_text(path.read_text().replace(*RENUMBER), encoding="utf-8")
    git(repo, "commit", "-q", "-am", "renumber top_k")
    broken = make_buf_breaking()
    assert broken.returncode != 0
    assert "--against '.git#ref=" in broken.stdout and "top_k" in broken.stdout
