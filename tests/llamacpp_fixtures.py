"""Session fixtures for llama.cpp: its server in a cached env, and GGUFs of the tiny model.

``llama_cpp`` builds llama-cpp-python[server] from its sdist once per
machine (minutes of C++; multimodal support switched off, it is not
needed) in a cached venv (``tests.cached_venv``), and keeps the sdist's
GGUF converter (``vendor/llama.cpp``: ``convert_hf_to_gguf.py`` with its
``gguf-py`` and ``conversion`` packages) next to it.

``spm_tiny_model`` is the tiny Llama with a SentencePiece tokenizer (the
converter refuses the byte-level BPE one); ``spm_ggufs`` converts its base
and its base with the adapter merged in, in fp32, with the project's own
interpreter (the converter needs torch, which the server env lacks).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from swayworker.hf.tiny import TinyModel
from swayworker.hf.tiny_spm import build_spm_tiny_model

from tests.cached_venv import cached_venv, pip_install

LLAMA_CPP = "llama-cpp-python==0.3.36"
CONVERTER_PARTS = ("convert_hf_to_gguf.py", "gguf-py", "conversion")


@dataclass(frozen=True)
class LlamaCpp:
    python: Path
    converter: Path  # the folder holding convert_hf_to_gguf.py, gguf-py/ and conversion/


@dataclass(frozen=True)
class Ggufs:
    base: Path
    ft: Path  # the base with the LoRA adapter merged in


def _install(python: Path, env_dir: Path) -> None:
    sdist_dir = env_dir / "sdist"
    download = ["pip", "download", "-q", "--no-deps", "--no-binary", ":all:", LLAMA_CPP]
    subprocess.run([str(python), "-m", *download, "-d", str(sdist_dir)], check=True)
    (sdist,) = sdist_dir.glob("*.tar.gz")
    _extract_converter(sdist, env_dir / "llama.cpp")
    build_env = {
        "CMAKE_ARGS": "-DLLAVA_BUILD=OFF",
        "CMAKE_BUILD_PARALLEL_LEVEL": str(os.cpu_count() or 2),
    }
    pip_install(python, f"{sdist}[server]", env=build_env)
    shutil.rmtree(sdist_dir)  # 77 MB, no longer needed


def _extract_converter(sdist: Path, into: Path) -> None:
    with tarfile.open(sdist) as archive:
        for member in archive.getmembers():
            parts = Path(member.name).parts
            if parts[1:3] == ("vendor", "llama.cpp") and parts[3:4] and parts[3] in CONVERTER_PARTS:
                member.name = str(Path(*parts[3:]))
                archive.extract(member, into, filter="data")


@pytest.fixture(scope="session")
def llama_cpp() -> LlamaCpp:
    python = cached_venv("llama-cpp", (LLAMA_CPP, "server", "-DLLAVA_BUILD=OFF"), _install)
    return LlamaCpp(python=python, converter=python.parent.parent / "llama.cpp")


@pytest.fixture(scope="session")
def spm_tiny_model(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return build_spm_tiny_model(tmp_path_factory.mktemp("tiny-spm"))


@pytest.fixture(scope="session")
def spm_ggufs(
    spm_tiny_model: TinyModel, llama_cpp: LlamaCpp, tmp_path_factory: pytest.TempPathFactory
) -> Ggufs:
    out = tmp_path_factory.mktemp("gguf")
    merged = _merge_adapter(spm_tiny_model, out / "merged")
    ggufs = Ggufs(base=out / "base.gguf", ft=out / "ft.gguf")
    for source, target in ((spm_tiny_model.base_dir, ggufs.base), (merged, ggufs.ft)):
        _convert(llama_cpp.converter, source, target)
    return ggufs


def _merge_adapter(tiny: TinyModel, out: Path) -> Path:
    """The base with the adapter folded into its weights (fp32), plus the tokenizer."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny.base_dir)
    merged = PeftModel.from_pretrained(base, tiny.adapter_dir).merge_and_unload()
    merged.save_pretrained(out)
    for name in ("tokenizer.model", "tokenizer_config.json"):
        shutil.copy(tiny.base_dir / name, out / name)
    return out


def _convert(converter: Path, model_dir: Path, gguf: Path) -> None:
    path = os.pathsep.join(str(converter / p) for p in ("gguf-py", "conversion", "."))
    script = str(converter / "convert_hf_to_gguf.py")
    result = subprocess.run(
        [sys.executable, script, str(model_dir), "--outtype", "f32", "--outfile", str(gguf)],
        env={**os.environ, "PYTHONPATH": path},
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"GGUF conversion of {model_dir} failed:\n{result.stderr[-3000:]}")
