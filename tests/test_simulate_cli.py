"""`python -m recoml.simulate` end to end, and nothing half-written when a simulation is interrupted."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from recoml.data.splits import load_splits
from recoml.data.store import open_store
from recoml.families.water_cherenkov import to_store
from tests.conftest import CONF_DIR, REPO


def run_simulate(tmp_path: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "recoml.simulate", f"paths.root_dir={tmp_path}", *overrides],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_simulate_cli_writes_store_splits_and_config(tmp_path: Path) -> None:
    result = run_simulate(tmp_path, "n_events=300", "particles=[e-,mu-]", "seed=3")
    assert result.returncode == 0, result.stderr
    store = open_store(tmp_path / "data" / "toy_wcte.h5")
    assert store.n_events == 300
    labels = store.read(np.arange(300), event_fields=["labels"])[2]["labels"]
    assert set(np.unique(labels)) == {1, 2}  # e 1, mu 2
    assert store.attrs["detector"] == "wcte"
    splits = load_splits(tmp_path / "data" / "toy_wcte_splits.npz", 300)
    assert sum(len(v) for v in splits.values()) == 300
    runs = list((tmp_path / "outputs" / "simulate" / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "config.yaml").exists()
    # An existing output is refused without overwrite=true, with one clear line.
    again = run_simulate(tmp_path, "n_events=10")
    assert again.returncode == 2
    assert "overwrite" in again.stderr and "Traceback" not in again.stderr


def test_unknown_particle_is_one_clear_line(tmp_path: Path) -> None:
    result = run_simulate(tmp_path, "n_events=10", "particles=[tau-]")
    assert result.returncode == 2
    assert "tau-" in result.stderr and "Traceback" not in result.stderr


def test_interrupted_simulation_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    detector = instantiate(OmegaConf.load(CONF_DIR / "detector" / "wcte.yaml"))
    import recoml.families.water_cherenkov.to_store as sim

    calls = {"n": 0}
    real = sim.simulate

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(sim, "simulate", interrupted)
    out = tmp_path / "events.h5"
    with pytest.raises(KeyboardInterrupt):
        to_store.simulate_to_store(detector, out, n_events=100, chunk_size=10, n_workers=1)
    assert calls["n"] == 2
    assert list(tmp_path.iterdir()) == []  # no output, no temporary file, no split file


def test_entry_points_read_the_configs_shipped_in_the_package() -> None:
    import recoml
    from recoml.utils.cli import CONFIG_PATH

    assert CONFIG_PATH == "pkg://recoml.conf" and (CONF_DIR / "train.yaml").is_file()
    assert CONF_DIR.parent == Path(recoml.__file__).resolve().parent
    assert not (REPO / "conf").exists()  # one config tree, inside the package


def test_error_inside_a_config_object_is_one_clear_line(tmp_path: Path) -> None:
    """Hydra's instantiate wraps errors raised while building a config object (here a detector read
    from a file that does not exist); the entry point still prints the one sentence, not a traceback."""
    missing = tmp_path / "no_such_geofile.txt"
    done = run_simulate(tmp_path, "detector=from_file", f"detector.path={missing}", "n_events=10")
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    assert str(missing) in done.stderr.splitlines()[-1]
