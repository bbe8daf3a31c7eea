"""Session fixture: the tiny Llama + LoRA build, made once per test run.

Imported by ``tests/conftest.py`` so every test module can ask for
``tiny_model``. The build is offline and takes a few seconds; within one run
it is made once and shared.
"""

from __future__ import annotations

import pytest
from swayworker.hf.tiny import TinyModel, build_tiny_model


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> TinyModel:
    return build_tiny_model(tmp_path_factory.mktemp("tiny"))
