"""Real geometry formats (issue 12): a WCSim geofile with an outer-detector section numbered again from 1
and its header PMT size in mm (tests/data/geometry, made from the real Super-K geofile), the WCTE design
geometry in JSON (written by the WCTE Geometry package), the real files' sensor identifiers, identifier
lookup in converters, and raw WCSim output (a real WCSim file) recognised whatever the mapping.
Every reader is checked against an independent read of the file with numpy, json or uproot."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot
from omegaconf import OmegaConf

from recoml.conf import CONFIG_MODULE
from recoml.conversion.run import convert_from_config
from recoml.conversion.sensor_lookup import SensorLookup
from recoml.data.identity import detector_fingerprint
from recoml.data.store import open_store
from recoml.errors import DataError, GeometryError
from recoml.families.water_cherenkov import load_geometry, read_tube_table
from recoml.training import train
from tests.helpers import CONF_DIR, REPO, make_cfg

DATA = REPO / "tests" / "data" / "geometry"
OD_FILE = DATA / "sk_od_section_geofile.txt"
WCTE_JSON = DATA / "wcte_design_geometry.json.gz"
RAW_WCSIM = REPO / "tests" / "data" / "root" / "wcsim_raw_2010.root"
Z_TO_Y = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])  # (x, y, z) -> (x, z, -y)


def _independent(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """numpy's read of the tube rows: (section, rows) with columns tube x y z dx dy dz cylLoc."""
    rows = np.loadtxt(path, skiprows=2)
    section = np.zeros(len(rows), dtype=int)
    section[np.flatnonzero(rows[1:, 0] == 1)[0] + 1 :] = 1
    return section, rows


def test_outer_section_numbered_from_one_reads_inner_by_default(caplog) -> None:
    section, rows = _independent(OD_FILE)
    inner = rows[section == 0]
    with caplog.at_level(logging.WARNING):
        table = read_tube_table(OD_FILE)
    assert "PMT radius 254.00 is in mm; using 25.40 cm" in caplog.text
    assert table.pmt_radius == pytest.approx(25.4)
    assert len(table.tube_id) == len(inner) == 557 and not table.outer.any()
    assert table.sensor_id_names == ("tube",) and table.sensor_ids[:, 0].tolist() == list(range(1, 558))
    np.testing.assert_allclose(table.positions, inner[:, 1:4] @ Z_TO_Y.T, atol=1e-9)
    det = load_geometry(OD_FILE)
    assert det.n_pmts == 557 and det.pmt_radius == pytest.approx(25.4)
    assert det.half_height == pytest.approx(1810.0)  # header height 3620 cm is plausible: kept


def test_outer_and_all_sensor_selections_keep_their_identifiers() -> None:
    section, rows = _independent(OD_FILE)
    outer = read_tube_table(OD_FILE, sensors="outer")
    assert len(outer.tube_id) == 557 and outer.outer.all()
    np.testing.assert_allclose(outer.positions, rows[section == 1, 1:4] @ Z_TO_Y.T, atol=1e-9)
    both = load_geometry(OD_FILE, sensors="all")
    assert both.n_pmts == 1114 and both.sensor_id_names == ("outer", "tube")
    ids = both.sensor_ids
    assert ids[:557, 0].tolist() == [0] * 557 and ids[557:, 0].tolist() == [1] * 557
    assert ids[557:, 1].tolist() == list(range(1, 558))  # the OD's own numbering, kept
    lookup = SensorLookup.from_detector(both, ["outer", "tube"])
    got = lookup.lookup({"outer": np.array([1, 0, 1]), "tube": np.array([1, 1, 557])}, "test")
    assert got.tolist() == [557, 0, 1113]


def test_implausible_header_size_is_one_sentence(tmp_path: Path) -> None:
    lines = OD_FILE.read_text().splitlines()
    lines[0] = lines[0].replace("254.00", "9999.00")
    bad = tmp_path / "bad.txt"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(
        GeometryError, match=r"bad.txt: the header's PMT radius 9999 is implausible in cm or mm"
    ):
        load_geometry(bad)
    lines = OD_FILE.read_text().splitlines()
    lines[0] = lines[0].replace("1886.01", "18860.1")  # radius in mm: converted
    mm = tmp_path / "mm.txt"
    mm.write_text("\n".join(lines) + "\n")
    assert load_geometry(mm, sensors="all").radius == pytest.approx(1886.01)


def test_sensors_outer_without_an_outer_detector(real_data: Path) -> None:
    with pytest.raises(GeometryError, match="sensors=outer but the file lists no outer-detector tubes"):
        load_geometry(real_data / "geometry" / "wcte_wcsim_geofile.txt", sensors="outer")


def test_real_geofiles_keep_tube_and_module_identifiers(real_data: Path) -> None:
    geo = real_data / "geometry"
    wcte = load_geometry(geo / "wcte_wcsim_geofile.txt")
    assert wcte.sensor_id_names == ("tube", "mpmt", "pmt")
    raw = np.loadtxt(geo / "wcte_wcsim_geofile.txt", skiprows=5)
    raw = raw[np.argsort(raw[:, 0])]
    np.testing.assert_array_equal(wcte.sensor_ids, raw[:, :3].astype(np.int64))
    lookup = SensorLookup.from_detector(wcte, ["mpmt", "pmt"])
    assert lookup.lookup({"mpmt": raw[:50, 1], "pmt": raw[:50, 2]}, "t").tolist() == list(range(50))
    sk_od = read_tube_table(geo / "sk_wcsim_geofile.txt", sensors="outer")
    assert len(sk_od.tube_id) == 11146 and (sk_od.tube_id % 2 == 0).all()  # SK: even ids are the OD
    with pytest.raises(
        GeometryError,
        match=r"2 of 3 hits carry identifiers detector .* does not have \(first: mpmt=107, pmt=1\)",
    ):
        lookup.lookup({"mpmt": np.array([107, 1, 1]), "pmt": np.array([1, 1, 20])}, "t")


# ----------------------------------------------------------------------------------------- conversion


def _write_ttree(path: Path, name: str, branches: dict) -> None:
    with uproot.recreate(path) as f:
        f.mktree(
            name,
            {k: ak.type(v) if isinstance(v, ak.Array) else np.asarray(v).dtype for k, v in branches.items()},
        )
        f[name].extend(branches)


def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        return compose(config_name="convert", overrides=overrides)


def test_converter_maps_tube_ids_of_an_outer_section_geometry_by_lookup(tmp_path: Path) -> None:
    """Hits carry WCSim tube ids of the inner detector: the lookup maps them, whatever the numbering."""
    rng = np.random.default_rng(0)
    n = 20
    counts = rng.integers(3, 9, n)
    tubes = ak.unflatten(rng.integers(1, 558, counts.sum()).astype(np.int32), counts)
    flat = tmp_path / "flat.root"
    branches = {
        "tube": tubes,
        "charge": ak.unflatten(rng.random(counts.sum()).astype(np.float32), counts),
        "time": ak.unflatten(rng.random(counts.sum()).astype(np.float32) + 900, counts),
        "energy": rng.uniform(100, 900, n),
    }
    _write_ttree(flat, "events", branches)
    mapping = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "convert" / "flat_wcsim_tubes.yaml"))
    mapping["objects"]["hits"].pop("hit_pmt")
    mapping["events"] = {"energies": "energy"}
    mapping["sensor_lookup"] = {"keys": {"tube": "tube"}}
    cfg = _compose(
        [
            f"input={flat}",
            f"output={tmp_path / 'out.h5'}",
            "progress=false",
            "detector=from_file",
            f"detector.path={OD_FILE}",
        ]
    )
    cfg.convert = OmegaConf.create(mapping)
    store = open_store(convert_from_config(cfg))
    np.testing.assert_array_equal(store.array("hit_pmt"), ak.flatten(tubes).to_numpy() - 1)
    assert store.attrs["detector_fingerprint"].startswith("557/")
    assert store.attrs["time_origin"] == "trigger" and store.attrs["energy_kind"] == "total"


def test_raw_wcsim_output_is_recognised_whatever_the_mapping(tmp_path: Path) -> None:
    raw = tmp_path / "wcsim_output.root"
    # the trees raw WCSim output holds (with plain stand-in branches for its class containers)
    _write_ttree(raw, "wcsimT", {"wcsimrootevent": np.arange(3)})
    with uproot.update(raw) as f:
        f.mktree("wcsimGeoT", {"wcsimrootgeom": np.int64})
        f.mktree("Settings", {"WCXRotation": np.float64})
    for mapping in ("flat_wcsim", "flat_wcsim_tubes", "hzz"):
        cfg = _compose(
            [f"input={raw}", f"convert={mapping}", f"output={tmp_path / 'o.h5'}", "progress=false"]
            + (["detector=wcte"] if mapping == "flat_wcsim" else [])
        )
        with pytest.raises(
            DataError,
            match=r"is raw WCSim output \('wcsimT', 'wcsimGeoT'.*convert=raw_wcsim detector=from_file",
        ):
            convert_from_config(cfg)
    assert not (tmp_path / "o.h5").exists()


def test_a_mapping_from_the_users_own_directory(tmp_path: Path) -> None:
    """docs/converting.md, "Your own mapping directory": a convert/ folder added to Hydra's search path."""
    mine = tmp_path / "my_configs" / "convert"
    mine.mkdir(parents=True)
    mapping = OmegaConf.load(CONF_DIR / "convert" / "flat_wcsim_tubes.yaml")
    mapping.name = "run7"
    mapping.events = {"energies": "energy"}
    OmegaConf.save(mapping, mine / "run7.yaml")
    flat = tmp_path / "run7.root"
    counts = np.array([3, 2])
    _write_ttree(
        flat,
        "events",
        {
            "tube": ak.unflatten(np.array([1, 5, 9, 2, 4], dtype=np.int32), counts),
            "charge": ak.unflatten(np.ones(5, dtype=np.float32), counts),
            "time": ak.unflatten(np.arange(5, dtype=np.float32), counts),
            "energy": np.array([100.0, 200.0]),
        },
    )
    search = f"hydra.searchpath=[file://{tmp_path / 'my_configs'}]"
    cfg = _compose([search, "convert=run7", f"input={flat}", f"output={tmp_path / 'o.h5'}", "progress=false"])
    store = open_store(convert_from_config(cfg))
    assert store.attrs["mapping_name"] == "run7" and store.array("hit_pmt").tolist() == [0, 4, 8, 1, 3]


# ----------------------------------------------------------------------------- WCTE design geometry JSON


def _wcte_json(tmp_path: Path) -> Path:
    """The design geometry as a user has it: plain JSON (the repository keeps it gzipped)."""
    out = tmp_path / "wcte_v11.json"
    out.write_bytes(gzip.decompress(WCTE_JSON.read_bytes()))
    return out


def test_wcte_design_json_against_an_independent_json_read(tmp_path: Path) -> None:
    path = _wcte_json(tmp_path)
    info = json.loads(path.read_text())
    rows = sorted(
        (int(m), int(p), pmt["placement"]["location"], pmt["placement"]["direction_z"])
        for m, mpmt in info["mpmts"].items()
        for p, pmt in mpmt["pmts"].items()
    )
    ids = np.array([r[:2] for r in rows])
    pos_cm = np.array([r[2] for r in rows]) / 10.0
    centre = (pos_cm.min(axis=0) + pos_cm.max(axis=0)) / 2
    facing = np.array([r[3] for r in rows])
    det = load_geometry(path)
    assert len(info["mpmts"]) == 106 and det.n_pmts == len(rows) == 2014 and det.pmts_per_module == 19
    assert det.sensor_id_names == ("mpmt", "pmt")
    np.testing.assert_array_equal(det.sensor_ids, ids)
    np.testing.assert_allclose(det.pmt_positions, pos_cm - centre, atol=1e-3)
    np.testing.assert_allclose(det.pmt_directions, facing, atol=1e-6)  # the file's own, none replaced
    assert det.pmt_radius == pytest.approx(75 / 2 / 10)  # PMT "size" 75 mm is the diameter
    assert det.half_height == pytest.approx(np.abs(pos_cm[:, 1] - centre[1]).max())
    # 21 mPMTs on each cap (4 of the bottom ones 2.9 cm lower than the others), 4 rings of 16 on the wall
    assert np.bincount(det.pmt_location[::19]).tolist() == [21, 64, 21]
    assert det.image_shape is not None and len(np.unique(det.image_pixel[::19])) == 106
    gz = load_geometry(WCTE_JSON)  # gzipped: the same geometry
    np.testing.assert_array_equal(gz.pmt_positions, det.pmt_positions)
    assert detector_fingerprint(gz) == detector_fingerprint(det)


def test_a_json_geometry_without_pmts_is_one_sentence(tmp_path: Path) -> None:
    info = json.loads(gzip.decompress(WCTE_JSON.read_bytes()))
    for mpmt in info["mpmts"].values():
        mpmt.pop("pmts")
    bad = tmp_path / "leds_only.json"
    bad.write_text(json.dumps(info))
    with pytest.raises(GeometryError, match=r"leds_only.json: mPMT '0' lists no PMTs; write the file with"):
        load_geometry(bad)
    other = tmp_path / "other.json"
    other.write_text('{"pmts": []}')
    with pytest.raises(GeometryError, match=r"other.json: a JSON geometry needs an 'mpmts' object"):
        load_geometry(other)


def test_detector_from_file_json_simulates_and_trains(tmp_path: Path) -> None:
    path = _wcte_json(tmp_path)
    cfg = make_cfg(
        tmp_path,
        tmp_path / "data",
        ["detector=from_file", f"detector.path={path}", "dataset.simulate.n_events=96",
         "dataset.num_workers=0", "dataset.pin_memory=false"],
    )  # fmt: skip
    metrics = train(cfg)
    assert np.isfinite(metrics["train/loss"]) and "test/acc" in metrics
    store = open_store(cfg.dataset.path)
    assert Path(cfg.dataset.path).name.startswith("toy_wcte_v11_")
    fingerprint = detector_fingerprint(load_geometry(path))
    assert fingerprint is not None and store.attrs["detector_fingerprint"] == fingerprint.as_attr()
    assert store.array("hit_pmt").max() < 2014


# --------------------------------------------------------------------------------- real raw WCSim output


def test_a_real_raw_wcsim_file_is_recognised(tmp_path: Path) -> None:
    raw = uproot.open(RAW_WCSIM)  # the independent read: what the file holds
    assert raw.classnames() == {"wcsimT;1": "TTree", "wcsimGeoT;1": "TTree"}
    assert raw["wcsimT"]["wcsimrootevent"].typename == "WCSimRootEvent"
    for mapping in ("flat_wcsim_tubes", "hzz"):
        cfg = _compose(
            [f"input={RAW_WCSIM}", f"convert={mapping}", f"output={tmp_path / 'o.h5'}", "progress=false"]
        )
        with pytest.raises(
            DataError,
            match=r"wcsim_raw_2010.root is raw WCSim output \('wcsimT', 'wcsimGeoT'.*convert=raw_wcsim",
        ):
            convert_from_config(cfg)
    assert not (tmp_path / "o.h5").exists()
