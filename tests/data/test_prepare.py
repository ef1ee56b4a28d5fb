"""A toy store is reused only when the dataset's recipe would make the same events today."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from recoml.data.prepare import ensure_dataset
from recoml.errors import DataError
from recoml.families.water_cherenkov.to_store import simulate_to_store
from tests.helpers import CONF_DIR, make_cfg


def _store(data: Path, **settings: object) -> Path:
    det = instantiate(OmegaConf.load(CONF_DIR / "detector" / "wcte.yaml"))
    return simulate_to_store(det, data / "toy_wcte.h5", n_events=3, overwrite=True, **settings)[0]


def test_a_store_made_by_the_recipe_is_reused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = _store(tmp_path / "data")
    cfg = make_cfg(tmp_path, tmp_path / "data", ["dataset.simulate.n_events=5"])  # the count may differ
    with caplog.at_level(logging.INFO):
        assert ensure_dataset(cfg) == store
    assert "probe" not in caplog.text  # the check's empty store is silent


def test_a_store_of_an_older_toy_physics_is_refused(tmp_path: Path) -> None:
    store = _store(tmp_path / "data", physics={"wall_reflectivity": 0.0})
    cfg = make_cfg(tmp_path, tmp_path / "data")
    with pytest.raises(DataError) as err:
        ensure_dataset(cfg)
    message = str(err.value)
    assert message.startswith(f"{store} was simulated with other toy settings")
    assert "physics.wall_reflectivity: 0.0 in the file, 0.1375 now" in message
    assert "event_source:" in message and "delete it to simulate it anew" in message
    # the recipe that made it accepts it; dataset.simulate=null takes it as it is
    assert ensure_dataset(
        make_cfg(tmp_path, tmp_path / "data", ["+dataset.simulate.physics.wall_reflectivity=0.0"])
    )
    assert ensure_dataset(make_cfg(tmp_path, tmp_path / "data", ["dataset.simulate=null"])) == store


def test_a_store_of_other_particles_or_seed_is_refused(tmp_path: Path) -> None:
    _store(tmp_path / "data", particles=["e-"], seed=3)
    with pytest.raises(
        DataError, match=r"particles: \['e-'\] in the file, \['e-', 'mu-', 'gamma'\] now; seed: 3"
    ):
        ensure_dataset(make_cfg(tmp_path, tmp_path / "data"))


def test_a_store_of_another_detector_geometry_is_refused(tmp_path: Path) -> None:
    det = instantiate(OmegaConf.load(CONF_DIR / "detector" / "iwcd.yaml"))
    simulate_to_store(det, tmp_path / "data" / "toy_wcte.h5", n_events=2)
    with pytest.raises(DataError, match="detector_fingerprint: .* in the file, 2014/"):
        ensure_dataset(make_cfg(tmp_path, tmp_path / "data"))


@pytest.mark.parametrize("detector", ["wcte", "toy_tracker"])
def test_a_store_from_recoml_simulate_defaults_is_what_train_expects(tmp_path: Path, detector: str) -> None:
    """README: `recoml simulate` first, then `recoml train`, must not be refused."""
    from tests.test_simulate_cli import run_simulate

    result = run_simulate(tmp_path, f"detector={detector}", "n_events=2", "tracker.n_particles=1000")
    assert result.returncode == 0, result.stderr
    dataset = ["dataset=toy_tracker", "experiment=tracking/edge_classifier"] if detector != "wcte" else []
    cfg = make_cfg(tmp_path, tmp_path / "data", [f"detector={detector}", *dataset])
    assert ensure_dataset(cfg) == tmp_path / "data" / f"toy_{detector}.h5"


def test_the_check_ignores_exactly_what_the_provenance_record_writes() -> None:
    from recoml.data.prepare import WRITER_ATTRS
    from recoml.io.provenance import record

    assert set(record()) <= WRITER_ATTRS
