"""Session fixtures for llama.cpp: its server in a provisioned env, and GGUFs of the tiny model.

``llama_cpp`` is llama-cpp-python[server] in an env of its own
(``swayhost.envs``), compiled from its sdist on first use (minutes of C++;
multimodal support switched off through ``CMAKE_ARGS``, it is not needed)
and reused afterwards, plus the GGUF converter that only that sdist ships
(``vendor/llama.cpp``: ``convert_hf_to_gguf.py`` with its ``gguf-py`` and
``conversion`` packages), extracted once into the host's cache folder.
``llama_server`` runs that server on a GGUF, on loopback.

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
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from swayhost import envs
from swayhost.paths import cache_dir
from swayworker.hf.tiny import TinyModel
from swayworker.hf.tiny_spm import build_spm_tiny_model

from tests.servers import free_port, running_server

LLAMA_CPP_VERSION = "0.3.36"
LLAMA_ENV = envs.EnvSpec(
    requirements=(f"llama-cpp-python[server]=={LLAMA_CPP_VERSION}",),
    install_env={"CMAKE_ARGS": "-DLLAVA_BUILD=OFF"},
    timeout=1800.0,  # the compile alone takes about 7 minutes on 2 cores
    name="llama-cpp-tests",
)
CONVERTER_PARTS = ("convert_hf_to_gguf.py", "gguf-py", "conversion")


@dataclass(frozen=True)
class LlamaCpp:
    python: Path
    converter: Path  # the folder holding convert_hf_to_gguf.py, gguf-py/ and conversion/


@dataclass(frozen=True)
class Ggufs:
    base: Path
    ft: Path  # the base with the LoRA adapter merged in


@pytest.fixture(scope="session")
def llama_cpp() -> LlamaCpp:
    return LlamaCpp(python=envs.ensure(LLAMA_ENV), converter=_converter())


def _converter() -> Path:
    """The converter from the server's sdist, downloaded and extracted on first use.

    It is extracted into a staging folder and renamed into place, so the
    folder exists only whole; a process that loses the race to another
    keeps the winner's.
    """
    folder = cache_dir() / "llama-cpp-converter" / LLAMA_CPP_VERSION
    if folder.is_dir():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".staging-", dir=folder.parent) as staging:
        download = ["download", "-q", "--no-deps", "--no-binary", ":all:", "-d", staging]
        sdist_of = f"llama-cpp-python=={LLAMA_CPP_VERSION}"
        subprocess.run([sys.executable, "-m", "pip", *download, sdist_of], check=True)
        (sdist,) = Path(staging).glob("*.tar.gz")
        _extract_converter(sdist, Path(staging) / "converter")
        try:
            os.rename(Path(staging) / "converter", folder)
        except OSError:
            if not folder.is_dir():
                raise
    return folder


def _extract_converter(sdist: Path, into: Path) -> None:
    with tarfile.open(sdist) as archive:
        for member in archive.getmembers():
            parts = Path(member.name).parts
            if parts[1:3] == ("vendor", "llama.cpp") and parts[3:4] and parts[3] in CONVERTER_PARTS:
                member.name = str(Path(*parts[3:]))
                archive.extract(member, into, filter="data")


@contextmanager
def llama_server(llama_cpp: LlamaCpp, gguf: Path, log: Path) -> Iterator[str]:
    """The root URL of llama.cpp's server on ``gguf``, on loopback, with echo and logprobs."""
    port = free_port()
    argv = [str(llama_cpp.python), "-m", "llama_cpp.server", "--model", str(gguf)]
    argv += ["--host", "127.0.0.1", "--port", str(port), "--n_ctx", "256", "--logits_all", "true"]
    # An fp32 KV cache (ggml type 0): the default fp16 one alone moves logprobs by ~3e-3.
    argv += ["--type_k", "0", "--type_v", "0"]
    # One token per batch: the server reuses the KV cache of the prefix a prompt shares with
    # the previous request, and other batch splits change the last bits; token by token, an
    # answer does not depend on what was asked before (as the kit's restart check requires).
    argv += ["--n_batch", "1"]
    with running_server(argv, port=port, log=log) as url:
        yield url


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
