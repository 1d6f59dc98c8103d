"""Shared fixtures: the real datasets beside the checkout (../shared), never copied in."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="session")
def shared() -> Path:
    if not (SHARED / "datasets").is_dir():
        pytest.skip(f"real test data not found at {SHARED} (the shared/ folder beside the checkout)")
    return SHARED
