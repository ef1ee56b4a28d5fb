"""Shared fixtures: the real test files in tests/data, small simulated stores, composed configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import CONF_DIR, DATA_DIR, REPO, toy_store_dir

__all__ = ["CONF_DIR", "DATA_DIR", "REPO", "real_data", "toy_data"]


@pytest.fixture(scope="session")
def real_data() -> Path:
    """``tests/data``: the real public files the reader tests use (origins and licences in SOURCES.md)."""
    return DATA_DIR


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small toy WCTE store (``helpers.N_TOY`` events) shared by the training tests."""
    return toy_store_dir(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="session")
def pid_ckpt(toy_data: Path) -> Path:
    """A PID checkpoint trained two steps on the toy store (for predict/export tests)."""
    from tests.evaluation_helpers import trained_checkpoint

    return trained_checkpoint(toy_data.parent, "pid")


@pytest.fixture(scope="session")
def hits_ckpt(toy_data: Path) -> Path:
    """A hit-classification checkpoint trained two steps on the toy store."""
    from tests.evaluation_helpers import HITS, trained_checkpoint

    return trained_checkpoint(toy_data.parent, "hits", HITS)


@pytest.fixture
def wandb_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """No W&B credentials anywhere (no API key, no netrc, no WANDB_MODE); W&B's own files in tmp_path.

    Whatever the code under test sets (``WANDB_MODE=offline``) is undone afterwards, and the run is
    finished so that the next test's logger starts its own.
    """
    for name in ("WANDB_API_KEY", "WANDB_MODE"):
        monkeypatch.setenv(name, "")  # recorded, so that the value set by the code is removed again
        monkeypatch.delenv(name)
    monkeypatch.setenv("NETRC", str(tmp_path / "no.netrc"))
    for name in ("WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(name, str(tmp_path / "wandb_home" / name.lower()))
    monkeypatch.setenv("WANDB_SILENT", "true")
    yield
    import wandb

    wandb.finish()
