"""The TrackML CSV reader against the real reduced event in tests/data/trackml, read with pandas."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recoml.errors import DataError, GeometryError
from recoml.families.tracking.trackml import (
    event_number,
    list_trackml_events,
    read_trackml_detectors,
    read_trackml_event,
)


@pytest.fixture(scope="module")
def trackml_dir(real_data: Path) -> Path:
    return real_data / "trackml"


@pytest.fixture(scope="module")
def detectors(trackml_dir: Path) -> pd.DataFrame:
    return read_trackml_detectors(trackml_dir)


@pytest.fixture(scope="module")
def event(trackml_dir: Path, detectors: pd.DataFrame) -> dict[str, np.ndarray]:
    return read_trackml_event(trackml_dir, "event000000001", detectors=detectors)


def _copy_event(src: Path, dst: Path, skip: tuple[str, ...] = ()) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for path in src.iterdir():
        if not any(s in path.name for s in skip):
            shutil.copy(path, dst / path.name)
    return dst


def test_list_and_names(trackml_dir: Path) -> None:
    assert list_trackml_events(trackml_dir) == ["event000000001"]
    assert event_number("event000000001") == 1


def test_hits_match_pandas(trackml_dir: Path, event: dict[str, np.ndarray]) -> None:
    hits = pd.read_csv(trackml_dir / "event000000001-hits.csv.gz")
    truth = pd.read_csv(trackml_dir / "event000000001-truth.csv.gz").set_index("hit_id").loc[hits.hit_id]
    assert len(event["hit_x"]) == 5527
    np.testing.assert_array_equal(event["hit_id"], hits.hit_id)
    np.testing.assert_allclose(event["hit_z"], hits.z, rtol=1e-6)
    np.testing.assert_array_equal(event["hit_volume_id"], hits.volume_id)
    np.testing.assert_array_equal(event["hit_module_id"], hits.module_id)
    np.testing.assert_array_equal(event["hit_particle_id"], truth.particle_id)
    assert event["hit_particle_id"].dtype == np.int64
    assert int((event["hit_particle_id"] == 0).sum()) == 829  # noise hits, as SOURCES.md says
    np.testing.assert_allclose(event["hit_weight"], truth.weight, rtol=1e-6)
    assert (event["hit_tpx"][event["hit_particle_id"] == 0] == 0).all()


def test_particles_hand_computed(trackml_dir: Path, event: dict[str, np.ndarray]) -> None:
    particles = pd.read_csv(trackml_dir / "event000000001-particles.csv.gz")
    assert len(event["particle_id"]) == 548
    # First particle: px=-0.0175291, py=-0.240424, pz=-0.128744, q=-1, nhits=7 (from the file itself).
    pt = np.hypot(-0.0175291, -0.240424)
    assert event["particle_pt"][0] == pytest.approx(pt, rel=1e-6)
    assert event["particle_eta"][0] == pytest.approx(-np.log(np.tan(np.arctan2(pt, -0.128744) / 2)), rel=1e-5)
    assert event["particle_phi"][0] == pytest.approx(np.arctan2(-0.240424, -0.0175291), rel=1e-6)
    assert event["particle_charge"][0] == -1
    # nhits counted from this event's truth agrees with the file's own column
    np.testing.assert_array_equal(event["particle_nhits"], particles.nhits)
    np.testing.assert_allclose(event["particle_vz"], particles.vz, rtol=1e-6)


def test_cells_and_modules(trackml_dir: Path, event: dict[str, np.ndarray], detectors: pd.DataFrame) -> None:
    cells = pd.read_csv(trackml_dir / "event000000001-cells.csv.gz")
    assert event["hit_cell_count"].sum() == len(cells)
    first = cells[cells.hit_id == event["hit_id"][1]]
    assert event["hit_cell_count"][1] == len(first)
    assert event["hit_cell_value"][1] == pytest.approx(first.value.sum(), rel=1e-6)
    assert len(detectors) == 18728 and "Unnamed: 0" not in detectors.columns
    row = detectors[(detectors.volume_id == 7) & (detectors.layer_id == 2) & (detectors.module_id == 1)].iloc[
        0
    ]
    np.testing.assert_allclose(event["hit_module_center"][0], [row.cx, row.cy, row.cz], rtol=1e-6)
    assert event["hit_module_rotation"][0, 0, 1] == pytest.approx(row.rot_xv)


def test_hit_without_truth(trackml_dir: Path, tmp_path: Path) -> None:
    d = _copy_event(trackml_dir, tmp_path / "ev", skip=("truth",))
    truth = pd.read_csv(trackml_dir / "event000000001-truth.csv.gz")
    truth.iloc[1:].to_csv(d / "event000000001-truth.csv", index=False)
    with pytest.raises(DataError, match=r"truth\.csv: 1 hit\(s\) of .*no truth row \(first hit_id 6\)"):
        read_trackml_event(d)


def test_missing_columns(trackml_dir: Path, tmp_path: Path) -> None:
    d = _copy_event(trackml_dir, tmp_path / "ev", skip=("hits",))
    hits = pd.read_csv(trackml_dir / "event000000001-hits.csv.gz")
    hits.drop(columns=["layer_id", "z"]).to_csv(d / "event000000001-hits.csv", index=False)
    with pytest.raises(DataError, match=r"hits\.csv: missing column\(s\) \['z', 'layer_id'\]"):
        read_trackml_event(d, 1)
    with pytest.raises(DataError, match="missing column"):
        pd.read_csv(trackml_dir / "detectors.csv.gz").drop(columns="pitch_u").to_csv(d / "det.csv")
        read_trackml_detectors(d / "det.csv")


def test_missing_file_and_event(trackml_dir: Path, tmp_path: Path) -> None:
    d = _copy_event(trackml_dir, tmp_path / "ev", skip=("particles",))
    with pytest.raises(DataError, match=r"event000000001-particles\.csv' .* not found"):
        read_trackml_event(d)
    with pytest.raises(DataError, match="no TrackML event 'event000000002'"):
        read_trackml_event(trackml_dir, 2)


def test_module_not_in_geometry(trackml_dir: Path, detectors: pd.DataFrame) -> None:
    partial = detectors[detectors.volume_id != 7]
    with pytest.raises(GeometryError, match="geometry does not match the data"):
        read_trackml_event(trackml_dir, detectors=partial)
