"""Shared fixtures: the real data beside the checkout, small simulated stores, composed configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CONF_DIR = REPO / "conf"


def _shared_data_dir() -> Path:
    return Path(os.environ.get("RECOML_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout (override with RECOML_SHARED_DATA); skip if absent."""
    path = _shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"real test data not found at {path} (set RECOML_SHARED_DATA)")
    return path
