"""The generic sensor-array family on KM3NeT (issue 12): ``.detx`` geometries, offline ROOT hits and a
Blosc-compressed HDF5 hit table converted by (dom_id, channel_id) lookup, each checked against an
independent read (numpy, uproot, h5py); toy events in sea water; GNN and PointNet trained, predictions
and evaluation. Real files: tests/data/km3net (km3net-testdata, MIT; see tests/data/SOURCES.md)."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import awkward as ak
import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest
import uproot
from omegaconf import OmegaConf

from recoml.conversion.mapping import parse_mapping
from recoml.conversion.pipeline import convert_root
from recoml.data.store import open_store
from recoml.errors import ConfigError, GeometryError
from recoml.families.sensor_array import load_detx
from recoml.families.sensor_array.sim import SeaWaterConfig, simulate_events
from tests.helpers import CONF_DIR, REPO, make_cfg

KM3 = REPO / "tests" / "data" / "km3net"
DETX = KM3 / "km3net_offline.detx"
ORCA = KM3 / "orca_115strings_av20min17mhorizontal_18OMs_alt9mvertical_v2.detx.gz"


def _pmt_rows(text: str) -> np.ndarray:
    """Independent read: every 8- or 9-column line whose first token is an integer PMT id."""
    rows = []
    for line in text.splitlines():
        tok = line.split()
        if line.startswith(" ") and len(tok) in (8, 9) and tok[0].lstrip("+").isdigit():
            rows.append([float(t) for t in tok[:8]])
    return np.asarray(rows)


@pytest.mark.parametrize(
    ("name", "n_sensors", "n_modules"),
    [
        ("km3net_offline.detx", 2790, 90),
        ("detx_v1.detx", 18, 6),
        ("detx_v3.detx", 18, 6),
        ("detx_v5.detx", 3348, 108),
    ],
)
def test_detx_versions_read_like_an_independent_parse(name: str, n_sensors: int, n_modules: int) -> None:
    det = load_detx(KM3 / name)
    assert det.n_sensors == n_sensors and det.n_modules == n_modules
    rows = _pmt_rows((KM3 / name).read_text())
    if name != "detx_v1.detx":  # v1/v3 test files start PMT lines with a space too; v1's DOM lines do not
        np.testing.assert_allclose(det.sensor_positions, rows[:, 1:4] * 100, atol=1e-3)  # m -> cm
        np.testing.assert_array_equal(det.sensor_ids[:, 2], rows[:, 0].astype(int))
    assert det.sensor_id_names == ("dom_id", "channel_id", "pmt_id")
    counts = np.bincount(det.module_index)
    for m in np.flatnonzero(counts)[:5]:  # channel ids run 0..n-1 inside every DOM
        assert sorted(det.sensor_ids[det.module_index == m, 1]) == list(range(counts[m]))


def test_gzipped_detx_and_no_cylinder_assumption() -> None:
    det = load_detx(ORCA)
    rows = _pmt_rows(gzip.decompress(ORCA.read_bytes()).decode())
    assert det.n_sensors == 64170 == len(rows) and det.n_modules == 2070
    np.testing.assert_allclose(
        det.sensor_directions, rows[:, 4:7] / np.linalg.norm(rows[:, 4:7], axis=1)[:, None], atol=1e-6
    )
    assert not hasattr(det, "radius") and det.image_pixel is None  # directions as in the file, no wall
    assert det.feature_scales()["z"][1] == pytest.approx(det.half_extent[2])


def test_broken_detx_is_one_sentence(tmp_path: Path) -> None:
    lines = DETX.read_text().splitlines()
    bad = tmp_path / "bad.detx"
    bad.write_text("\n".join(lines[:40] + [" 1 2 3"] + lines[41:]) + "\n")
    with pytest.raises(GeometryError, match=r"bad.detx: line 41 has 3 columns, expected a v2 PMT line .* 8"):
        load_detx(bad)


def test_offline_root_hits_map_by_dom_and_channel(tmp_path: Path) -> None:
    det = load_detx(DETX)
    mapping = parse_mapping(OmegaConf.load(CONF_DIR / "convert" / "km3net_offline.yaml"))
    out = convert_root(
        KM3 / "km3net_offline.root", tmp_path / "off.h5", mapping, detector=det, progress=False
    )
    store = open_store(out)
    tree = uproot.open(KM3 / "km3net_offline.root")["E"]
    raw = tree.arrays(["hits.dom_id", "hits.channel_id", "hits.t", "hits.tot", "hits.trig"], library="ak")
    assert len(store) == 10 and store.counts().tolist() == ak.num(raw["hits.dom_id"]).tolist()
    pmt = store.array("hit_pmt")
    np.testing.assert_array_equal(det.sensor_ids[pmt, 0], ak.flatten(raw["hits.dom_id"]).to_numpy())
    np.testing.assert_array_equal(det.sensor_ids[pmt, 1], ak.flatten(raw["hits.channel_id"]).to_numpy())
    # times from the event's earliest triggered hit (the file's count from the timeslice start, ~1e8 ns,
    # would lose 8 ns to float32): numpy's own per-event subtraction, in float64
    t, trig = (ak.flatten(raw[f"hits.{k}"]).to_numpy() for k in ("t", "trig"))
    counts = ak.num(raw["hits.t"]).to_numpy()
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    trigger = np.array([t[a : a + n][trig[a : a + n] > 0].min() for a, n in zip(starts, counts)])
    np.testing.assert_allclose(store.array("hit_time"), t - np.repeat(trigger, counts), atol=1e-3)
    assert np.abs(store.array("hit_time")).max() < 5000  # ns: within a few microseconds of the trigger
    np.testing.assert_allclose(store.array("hit_charge"), ak.flatten(raw["hits.tot"]).to_numpy())
    assert (
        store.attrs["time_origin"] == "trigger"
        and store.attrs["detector_fingerprint"] == det.fingerprint.as_attr()
    )
    other = load_detx(KM3 / "detx_v3.detx")  # another detector: its DOM ids are not those of the hits
    with pytest.raises(
        GeometryError, match=r"hits carry identifiers detector 'detx_v3' does not have \(first: dom_id="
    ):
        convert_root(KM3 / "km3net_offline.root", tmp_path / "x.h5", mapping, detector=other, progress=False)
    assert not (tmp_path / "x.h5").exists()


def test_blosc_hdf5_hit_table_maps_by_dom_and_channel(tmp_path: Path) -> None:
    det = load_detx(ORCA)
    mapping = parse_mapping(OmegaConf.load(CONF_DIR / "convert" / "km3net_hdf5.yaml"))
    out = convert_root(KM3 / "numu_cc_test.h5", tmp_path / "h5.h5", mapping, detector=det, progress=False)
    store = open_store(out)
    with h5py.File(KM3 / "numu_cc_test.h5") as f:
        assert "32001" in f["hits"]._filters  # the Blosc filter, read through hdf5plugin
        hits = f["hits"][()]
    assert store.counts().tolist() == np.bincount(hits["event_id"]).tolist() == [2440, 2105]
    pmt = store.array("hit_pmt")
    np.testing.assert_array_equal(det.sensor_ids[pmt, 0], hits["dom_id"])
    np.testing.assert_array_equal(det.sensor_ids[pmt, 1], hits["channel_id"])
    np.testing.assert_allclose(store.array("hit_time"), hits["time"].astype(np.float32))


# ------------------------------------------------------------------------------------------- toy physics


def test_sea_water_numbers_and_a_hand_computed_muon_sensor() -> None:
    phys = SeaWaterConfig()
    assert math.degrees(phys.cherenkov_angle) == pytest.approx(42.2, abs=0.05)
    assert phys.attenuation_length == pytest.approx(1 / (1 / 6000 + 1 / 26500))  # 48.9 m
    # one sensor 10 m from a muon along +z through the origin, facing the track
    from recoml.families.sensor_array.sim import _event

    class One:
        sensor_positions = np.array([[1000.0, 0.0, 0.0]], dtype=np.float32)
        sensor_directions = np.array([[-1.0, 0.0, 0.0]], dtype=np.float32)
        pmt_radius = 4.0

    mu, t, _ = _event(One, np.random.default_rng(0), "mu-", 1e5, np.zeros(3), np.array([0.0, 0.0, 1.0]), phys)
    th = phys.cherenkov_angle
    path = 1000 / math.sin(th)
    expected = (
        phys.track_photons
        * 1.2
        * math.pi
        * 16
        / (2 * math.pi * 1000 * math.sin(th))
        * math.exp(-path / phys.attenuation_length)
        * math.sin(th)
    )
    assert mu[0] == pytest.approx(expected, rel=1e-6)  # acceptance cos(eta) = sin(theta_c) here
    assert t[0] == pytest.approx(-1000 / math.tan(th) / 29.9792458 + path * 1.38 / 29.9792458, rel=1e-6)


def test_toy_events_are_reproducible_and_muons_light_more_sensors() -> None:
    det = load_detx(DETX)
    a = simulate_events(det, 40, seed=3)
    b = simulate_events(det, 20, seed=3, first_event=20)
    np.testing.assert_array_equal(a["labels"][20:], b["labels"])
    counts = np.diff(np.r_[a["event_hits_index"], len(a["hit_pmt"])])
    signal = np.add.reduceat(a["hit_parent"] >= 0, a["event_hits_index"])
    assert (counts >= signal).all() and signal.sum() > 0
    assert a["energies"].min() >= 1e4 and a["energies"].max() <= 1e6


# ---------------------------------------------------------------------------------------- end to end


def test_image_models_are_refused_on_a_sensor_array(tmp_path: Path) -> None:
    from recoml.training import train

    cfg = make_cfg(
        tmp_path,
        tmp_path / "data",
        ["dataset=km3net", f"detector.path={DETX}", "model=resnet18", "dataset.simulate.n_events=40"],
    )
    with pytest.raises(
        ConfigError,
        match=r"has no image map \(a sensor array has no image map\); use a graph or point-cloud model",
    ):
        train(cfg)


@pytest.mark.parametrize("model", ["gnn", "pointnet"])
def test_km3net_toy_trains_predicts_and_evaluates(tmp_path: Path, model: str) -> None:
    from recoml.evaluation.run import evaluate_files
    from recoml.prediction.run import predict
    from recoml.training import train
    from tests.evaluation_helpers import compose_verb

    data = tmp_path / "data"
    overrides = [
        "dataset=km3net",
        f"detector.path={DETX}",
        f"model={model}",
        "dataset.simulate.n_events=200",
        "dataset.batch_size=16",
        "dataset.eval_batch_size=32",
    ]
    if model == "gnn":
        overrides += ["model.net.hidden=16"]
    cfg = make_cfg(tmp_path, data, overrides)
    metrics = train(cfg)
    assert "test/loss" in metrics and math.isfinite(metrics["test/loss"])
    stores = list(data.glob("toy_km3net_offline_*.h5"))
    assert len(stores) == 1  # named by the geometry
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    out = predict(compose_verb("predict", tmp_path / "pred", [f"ckpt_path={ckpt}"]))
    result = evaluate_files([out], tmp_path / "eval")
    assert "pid" in result.sections and result.report.is_file()
    assert "aux_dwall" not in h5py.File(out)  # no cylinder, no distance to a wall
    # the report's event displays come from the sensor-array family (strings view + 3D page)
    report = result.report.read_text()
    assert "event displays" in report
    assert "_strings.png" in report and "_3d.html" in report
