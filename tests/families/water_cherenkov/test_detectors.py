"""Detector geometries: generated cylinders (conf/detector), real geometry files, image maps, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from recoml.conf import CONF_DIR
from recoml.errors import ConfigError, GeometryError
from recoml.families.water_cherenkov import (
    WCDetector,
    build_cylinder,
    image_map_from_positions,
    load_geometry,
    read_image_map_csv,
    read_tube_table,
)

CONF = CONF_DIR / "detector"
GARBAGE_TYPE2 = "0444388389810866653562081592506563399950393070436707222556514031567616961897775049765086.00"


# --------------------------------------------------------------------------------------------- helpers


def _from_conf(name: str) -> WCDetector:
    return instantiate(OmegaConf.load(CONF / f"{name}.yaml"))


def _module_centres(det: WCDetector) -> np.ndarray:
    return det.pmt_positions.reshape(-1, det.pmts_per_module, 3).astype(np.float64).mean(axis=1)


def _inward_normals(det: WCDetector) -> np.ndarray:
    """The wall's inward normal at each PMT's module: radial on the barrel, -+y on the caps."""
    c = np.repeat(_module_centres(det), det.pmts_per_module, axis=0)
    rho = np.maximum(np.hypot(c[:, 0], c[:, 2]), 1e-9)
    n = np.stack([-c[:, 0] / rho, np.zeros(len(c)), -c[:, 2] / rho], axis=1)
    n[det.pmt_location == 0] = (0.0, -1.0, 0.0)
    n[det.pmt_location == 2] = (0.0, 1.0, 0.0)
    return n


def _check_common(det: WCDetector) -> None:
    """Directions unit and inward, image map one-to-one and in range, module membership."""
    d = det.pmt_directions.astype(np.float64)
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-5)
    assert (np.einsum("ij,ij->i", d, _inward_normals(det)) > 0.5).all()
    h, w = det.image_shape
    assert det.image_pixel.min() >= 0 and det.image_pixel.max() < h * w
    key = det.image_pixel * det.pmts_per_module + det.image_channel
    assert len(np.unique(key)) == det.n_pmts
    np.testing.assert_array_equal(det.module_id, np.arange(det.n_pmts) // det.pmts_per_module)
    np.testing.assert_array_equal(det.image_channel, np.arange(det.n_pmts) % det.pmts_per_module)
    # Every PMT of a module shares its pixel and location.
    per_module = det.image_pixel.reshape(-1, det.pmts_per_module)
    assert (per_module == per_module[:, :1]).all()
    assert set(np.unique(det.pmt_location)) <= {0, 1, 2}


def _check_barrel_order(det: WCDetector) -> None:
    """Barrel: row grows downward (y falls), column grows with the azimuth atan2(z, x)."""
    ppm = det.pmts_per_module
    c = _module_centres(det)
    pix = det.image_pixel[::ppm]
    barrel = det.pmt_location[::ppm] == 1
    w = det.image_shape[1]
    row, col, y = pix[barrel] // w, pix[barrel] % w, c[barrel, 1]
    phi = np.arctan2(c[barrel, 2], c[barrel, 0])
    for cc in np.unique(col):
        m = col == cc
        o = np.argsort(row[m])
        assert (np.diff(y[m][o]) < 0).all(), f"column {cc}: y must fall as the row grows"
    for rr in np.unique(row):
        m = row == rr
        o = np.argsort(col[m])
        step = np.angle(np.exp(1j * np.diff(phi[m][o])))
        assert (step > 0).all(), f"row {rr}: azimuth must grow with the column"
        assert step.sum() < 2 * np.pi


def _module_spread(det: WCDetector) -> float:
    g = det.pmt_positions.reshape(-1, det.pmts_per_module, 3).astype(np.float64)
    return float(np.linalg.norm(g[:, :, None] - g[:, None], axis=-1).max())


def _tiny(ppm: int = 1) -> WCDetector:
    """A small cylinder whose image map is a full square cap grid (so positions reproduce it)."""
    return build_cylinder(
        name="tiny",
        radius=100.0,
        half_height=80.0,
        barrel_rows=3,
        barrel_columns=8,
        cap_grid=3,
        cap_spacing=40.0,
        cap_radius=60.0,
        pmts_per_module=ppm,
        pmt_radius=4.0,
        module_radius=10.0 if ppm > 1 else 0.0,
    )


def _write_old_geofile(path: Path, det: WCDetector, order: np.ndarray, base: int = 1) -> list[str]:
    """WCSim old geofile, tank axis z (file = (x, -z, y) of recoml), rows in ``order``, ids from ``base``."""
    p, d = det.pmt_positions.astype(np.float64), det.pmt_directions.astype(np.float64)
    fp = np.stack([p[:, 0], -p[:, 2], p[:, 1]], axis=1)
    fd = np.stack([d[:, 0], -d[:, 2], d[:, 1]], axis=1)
    lines = [
        f"{det.radius:8.2f}{2 * det.half_height:8.2f}{det.n_pmts:10d}{det.pmt_radius:8.2f}",
        "    0.00    0.00    0.00",
    ]
    for k in order:
        row = " ".join(f"{v:.9f}" for v in (*fp[k], *fd[k]))
        lines.append(f"{k + base:4d} {row} {int(det.pmt_location[k]):3d}")
    path.write_text("\n".join(lines) + "\n")
    return lines


def _write_mpmt_geofile(path: Path, det: WCDetector, order: np.ndarray) -> list[str]:
    """WCSim newer (mPMT) geofile, tank axis y, with WCTE's garbage "Type 2" header line."""
    p, d = det.pmt_positions.astype(np.float64), det.pmt_directions.astype(np.float64)
    lines = [
        f"Detector radius & height {det.radius:8.2f}{2 * det.half_height:8.2f}",
        f"Type 1 ID PMT number & size {det.n_pmts:10d}    4.00",
        f"Type 2 ID PMT number & size          {GARBAGE_TYPE2}",
        "OD PMT number & size                 0    0.00",
        "Centre offset     0.00    0.00    0.00",
    ]
    for k in order:
        row = " ".join(f"{v:.9f}" for v in (*p[k], *d[k]))
        lines.append(f"{k + 1:7d} {k // 19 + 1:5d} {k % 19 + 1:3d} {row}   1")
    path.write_text("\n".join(lines) + "\n")
    return lines


def _raw_rows(path: Path, ids: list[int], first_col: int = 0) -> dict[int, list[float]]:
    """Rows of a geofile's table, picked by tube id, as written in the file."""
    out = {}
    for line in path.read_text().splitlines():
        tok = line.split()
        if tok and tok[0].isdigit() and int(tok[0]) in ids and len(tok) >= 8:
            out[int(tok[0])] = [float(t) for t in tok]
    assert sorted(out) == sorted(ids)
    return out


# ----------------------------------------------------------------------------- generated (conf/detector)

EXPECTED = {  # name: (PMT count range, pmts per module)
    "wcte": ((2014, 2014), 19),
    "iwcd": ((9_500, 10_500), 19),
    "sk": ((11_146, 11_148), 1),
    "hk": ((19_000, 21_000), 1),
}


@pytest.fixture(scope="module", params=sorted(EXPECTED))
def generated(request) -> tuple[str, WCDetector, dict]:
    cfg = OmegaConf.to_container(OmegaConf.load(CONF / f"{request.param}.yaml"))
    return request.param, _from_conf(request.param), cfg


def test_generated_counts_and_size(generated):
    name, det, cfg = generated
    (lo, hi), ppm = EXPECTED[name]
    assert lo <= det.n_pmts <= hi
    assert det.pmts_per_module == ppm == cfg["pmts_per_module"]
    assert det.radius == cfg["radius"] and det.half_height == cfg["half_height"]
    assert det.name == name
    module_centres = _module_centres(det)
    rho = np.hypot(module_centres[:, 0], module_centres[:, 2])
    assert rho.max() <= det.radius + 1e-3
    assert np.abs(module_centres[:, 1]).max() <= det.half_height + 1e-3


def test_wcte_is_106_mpmts_of_19():
    det = _from_conf("wcte")
    assert det.n_pmts == 2014 and det.n_modules == 106


def test_generated_directions_image_and_modules(generated):
    name, det, cfg = generated
    _check_common(det)
    _check_barrel_order(det)
    if det.pmts_per_module > 1:
        assert _module_spread(det) <= 2 * cfg["module_radius"] + 1e-3


def test_generated_hand_computed_pixels():
    wcte = _from_conf("wcte")  # 5x5 cap grid above a 4x16 barrel; barrel rows 78 cm apart
    pixel = 5 * 16 + 0  # barrel row 0, column 0
    ks = np.flatnonzero(wcte.image_pixel == pixel)
    assert len(ks) == 19 and (ks // 19 == ks[0] // 19).all()
    centre = wcte.pmt_positions[ks[wcte.image_channel[ks] == 18][0]]  # channel 18: the dome's centre
    phi = 2 * np.pi * 0.5 / 16
    np.testing.assert_allclose(centre, [155.26 * np.cos(phi), 156.0 - 39.0, 155.26 * np.sin(phi)], atol=1e-3)

    sk = _from_conf("sk")  # 49x49 cap grid, 51x150 barrel
    k = np.flatnonzero(sk.image_pixel == 49 * 150 + 0)
    assert len(k) == 1
    phi = 2 * np.pi * 0.5 / 150
    want = [1690.0 * np.cos(phi), 1810.0 - 0.5 * 3620.0 / 51, 1690.0 * np.sin(phi)]
    np.testing.assert_allclose(sk.pmt_positions[k[0]], want, atol=1e-2)
    top_centre = np.flatnonzero(sk.image_pixel == 24 * 150 + 75)  # top cap grid centre
    np.testing.assert_allclose(sk.pmt_positions[top_centre[0]], [0.0, 1810.0, 0.0], atol=1e-3)
    np.testing.assert_allclose(sk.pmt_directions[top_centre[0]], [0.0, -1.0, 0.0], atol=1e-6)


def test_build_cylinder_rejects_bad_layout():
    cfg = OmegaConf.to_container(OmegaConf.load(CONF / "wcte.yaml"))
    cfg.pop("_target_")
    with pytest.raises(GeometryError, match="cap_grid"):
        build_cylinder(**{**cfg, "cap_grid": 4})
    with pytest.raises(GeometryError, match="pmts_per_module"):
        build_cylinder(**{**cfg, "pmts_per_module": 7})


@pytest.mark.parametrize("name", ["wcte", "tiny"])
def test_image_map_from_positions_reproduces_build_cylinder(name):
    det = _from_conf("wcte") if name == "wcte" else _tiny()
    ppm = det.pmts_per_module
    pixel, shape = image_map_from_positions(
        _module_centres(det), det.half_height, det.radius, det.pmt_location[::ppm]
    )
    assert shape == det.image_shape
    np.testing.assert_array_equal(pixel, det.image_pixel[::ppm])


def test_image_map_refuses_two_modules_on_one_pixel():
    pos = np.array([[100.0, 0.0, 0.0], [0.0, 0.0, 100.0], [100.0, 0.0, 1.0], [-100.0, 0.0, 0.0]])
    with pytest.raises(GeometryError, match="share pixel"):
        image_map_from_positions(pos, 50.0, 100.0, np.ones(4, dtype=np.int8))


def test_read_image_map_csv(tmp_path):
    f = tmp_path / "map.csv"
    f.write_text(",0,1,2\n1,,0,\n0,1,,2\n")
    pixel, shape = read_image_map_csv(f)
    assert shape == (2, 3)
    np.testing.assert_array_equal(pixel, [1 * 3 + 1, 0, 2])
    f.write_text(",0,1,2\n1,,0,\n0,1,,0\n")
    with pytest.raises(GeometryError, match="module 0 appears twice"):
        read_image_map_csv(f)
    f.write_text(",0,1,2\n1,,0,\n0,1,,3\n")
    with pytest.raises(GeometryError, match=r"missing \[2\]"):
        read_image_map_csv(f)


# ---------------------------------------------------------------------------------- synthetic files


def test_shuffled_one_based_old_geofile(tmp_path):
    det = _tiny()
    order = np.random.default_rng(0).permutation(det.n_pmts)
    path = tmp_path / "geo.txt"
    _write_old_geofile(path, det, order)
    got = load_geometry(path)
    assert got.name == "geo" and got.n_pmts == det.n_pmts and got.pmts_per_module == 1
    np.testing.assert_allclose(got.pmt_positions, det.pmt_positions, atol=1e-4)  # tube k+1 -> PMT k
    np.testing.assert_allclose(got.pmt_directions, det.pmt_directions, atol=1e-6)
    np.testing.assert_array_equal(got.pmt_location, det.pmt_location)
    np.testing.assert_array_equal(got.image_pixel, det.image_pixel)
    assert got.half_height == det.half_height and got.radius == pytest.approx(det.radius)
    assert read_tube_table(path).file_axis == "z"


def test_shuffled_zero_based_npz_mpmt_outward(tmp_path):
    det = _tiny(19)
    perm = np.random.default_rng(1).permutation(det.n_pmts)
    path = tmp_path / "geo.npz"
    # Stored outward-facing: the reader flips them.
    np.savez(path, tube_no=perm, position=det.pmt_positions[perm], orientation=-det.pmt_directions[perm])
    got = load_geometry(path, name="tiny_npz")
    assert got.pmts_per_module == 19 and got.n_modules == det.n_modules  # inferred from the layout
    np.testing.assert_allclose(got.pmt_positions, det.pmt_positions, atol=1e-5)
    np.testing.assert_allclose(got.pmt_directions, det.pmt_directions, atol=1e-6)
    _check_common(got)
    # Read as single PMTs, 19 PMTs sit in one place: no one-to-one image map. The geometry still loads
    # (graphs and point clouds need none) and image models are refused, saying why.
    single = load_geometry(path, pmts_per_module=1)
    assert single.image_pixel is None and "share pixel" in single.image_map_note
    from recoml.families.water_cherenkov.images import ImageBuilder

    with pytest.raises(
        ConfigError, match=r"has no image map \(image map from positions: modules .* share pixel"
    ):
        ImageBuilder(single)


def test_shuffled_mpmt_geofile_with_garbage_header(tmp_path):
    det = _tiny(19)
    path = tmp_path / "mpmt_geo.txt"
    _write_mpmt_geofile(path, det, np.random.default_rng(2).permutation(det.n_pmts))
    got = load_geometry(path)
    assert got.pmts_per_module == 19 and got.n_pmts == det.n_pmts
    np.testing.assert_allclose(got.pmt_positions, det.pmt_positions, atol=1e-4)
    assert got.radius == 100.0 and got.half_height == 80.0 and got.pmt_radius == 4.0
    np.testing.assert_array_equal(got.pmt_location, det.pmt_location)  # despite cylLoc 1 everywhere
    with pytest.raises(GeometryError, match="19 PMTs per mPMT"):
        load_geometry(path, pmts_per_module=1)


def test_mpmt_ids_not_module_major_are_refused(tmp_path):
    det = _tiny(19)
    path = tmp_path / "bad_mpmt.txt"
    lines = _write_mpmt_geofile(path, det, np.arange(det.n_pmts))
    tok = lines[5 + 20].split()  # tube 21: mPMT 2, pmtInMod 2 -> claim pmtInMod 3
    tok[2] = "3"
    other = lines[5 + 21].split()
    other[2] = "2"
    lines[5 + 20], lines[5 + 21] = " ".join(tok), " ".join(other)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(GeometryError, match=r"bad_mpmt\.txt.*tube 21 is mPMT 2 PMT 3"):
        load_geometry(path)


def test_duplicate_tube_ids_are_refused(tmp_path):
    det = _tiny()
    path = tmp_path / "dup.txt"
    lines = _write_old_geofile(path, det, np.arange(det.n_pmts))
    tok = lines[2 + 9].split()
    tok[0] = "7"  # tube 10 claims to be tube 7
    lines[2 + 9] = " ".join(tok)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(GeometryError, match=r"dup\.txt.*duplicate tube ids \[7\]"):
        load_geometry(path)


def test_file_errors_name_the_file_and_line(tmp_path):
    with pytest.raises(GeometryError, match=r"nope\.txt.*not found"):
        load_geometry(tmp_path / "nope.txt")
    garbage = tmp_path / "garbage.txt"
    garbage.write_text("hello world\nthis is not a geometry\n")
    with pytest.raises(GeometryError, match=r"garbage\.txt.*no tube table"):
        load_geometry(garbage)
    binary = tmp_path / "binary.dat"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(GeometryError, match=r"binary\.dat"):
        load_geometry(binary)
    bad_npz = tmp_path / "bad.npz"
    bad_npz.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(GeometryError, match=r"bad\.npz"):
        load_geometry(bad_npz)
    no_key = tmp_path / "nokey.npz"
    np.savez(no_key, tube_no=np.arange(3), position=np.zeros((3, 3)))
    with pytest.raises(GeometryError, match=r"nokey\.npz.*orientation"):
        load_geometry(no_key)

    det = _tiny()
    path = tmp_path / "broken.txt"
    lines = _write_old_geofile(path, det, np.arange(det.n_pmts))
    for bad, match in (
        ("5 1.0 2.0 abc 0 0 1 1", r"broken\.txt: line 7 is not numeric"),
        ("5 1.0 2.0 3.0 0 0 1", r"broken\.txt: line 7 has 7 columns, expected 8"),
    ):
        path.write_text("\n".join([*lines[:6], bad, *lines[7:]]) + "\n")
        with pytest.raises(GeometryError, match=match):
            load_geometry(path)
    path.write_text("\n".join(lines[:-1]) + "\n")  # one tube fewer than the header says
    with pytest.raises(GeometryError, match=r"announces 42 tubes, the table has 41"):
        load_geometry(path)
    with pytest.raises(GeometryError, match="sensors must be one of"):
        load_geometry(garbage, sensors="sideways")


def test_from_file_config(tmp_path):
    det = _tiny()
    path = tmp_path / "geo.txt"
    _write_old_geofile(path, det, np.arange(det.n_pmts))
    cfg = OmegaConf.load(CONF / "from_file.yaml")
    assert cfg._target_ == "recoml.families.water_cherenkov.load_geometry" and OmegaConf.is_missing(
        cfg, "path"
    )
    got = instantiate(cfg, path=str(path))
    # named by the file's stem and content hash, so two geometries never share a toy store
    assert isinstance(got, WCDetector) and got.name.startswith("geo_") and got.n_pmts == det.n_pmts
    assert len(got.name) == len("geo_") + 8


# ---------------------------------------------------------------------------------- real geometry files


@pytest.fixture(scope="module")
def geo_dir(real_data: Path) -> Path:
    return real_data / "geometry"


@pytest.fixture(scope="module")
def sk(geo_dir: Path) -> WCDetector:
    return load_geometry(geo_dir / "sk_wcsim_geofile.txt", name="sk")


@pytest.fixture(scope="module")
def wcte(geo_dir: Path) -> WCDetector:
    return load_geometry(geo_dir / "wcte_wcsim_geofile.txt", name="wcte")


@pytest.fixture(scope="module")
def iwcd(geo_dir: Path) -> WCDetector:
    return load_geometry(geo_dir / "iwcd_watchmal_geo.npz", name="iwcd")


def test_real_sk(sk, geo_dir):
    assert sk.n_pmts == 11146 and sk.pmts_per_module == 1
    assert np.bincount(sk.pmt_location).tolist() == [1748, 7650, 1748]
    assert sk.half_height == 1810.0  # header "3620.00" is the full height
    assert 1690.0 <= sk.radius < 1886.01  # the header's 1886.01 is an outer tube's radius
    assert sk.image_shape == (48 + 51 + 48, 150)
    assert sk.pmt_radius == 25.4
    _check_common(sk)
    _check_barrel_order(sk)
    # Inner tubes are the odd ids: tube t -> PMT (t - 1) // 2; the file's axis z becomes y.
    rows = _raw_rows(geo_dir / "sk_wcsim_geofile.txt", [1, 3, 22291])
    for t, row in rows.items():
        k = (t - 1) // 2
        x, y, z, dx, dy, dz = row[1:7]
        np.testing.assert_allclose(sk.pmt_positions[k], [x, z, -y], atol=1e-3)
        np.testing.assert_allclose(sk.pmt_directions[k], [dx, dz, -dy], atol=1e-6)
    assert sk.pmt_location[(22291 - 1) // 2] == 2  # bottom cap, facing up
    # Extra-tower tube 14389: stored orientation ~+z (broken), replaced by the inward radial normal.
    k = (14389 - 1) // 2
    assert sk.pmt_location[k] == 1
    p = sk.pmt_positions[k]
    np.testing.assert_allclose(sk.pmt_directions[k], [-p[0], 0, -p[2]] / np.hypot(p[0], p[2]), atol=1e-6)


def test_real_sk_keep_all(geo_dir):
    path = geo_dir / "sk_wcsim_geofile.txt"
    table = read_tube_table(path, sensors="all")
    assert len(table.tube_id) == 22292 and table.outer.sum() == 11146
    np.testing.assert_array_equal(table.tube_id[~table.outer] % 2, 1)
    inner = read_tube_table(path)
    np.testing.assert_array_equal(inner.tube_id, np.arange(1, 22292, 2))
    det = load_geometry(path, sensors="all")
    assert det.n_pmts == 22292 and det.radius == 1886.01 and det.half_height == 1810.0
    assert len(np.unique(det.image_pixel)) == 22292


def test_real_wcte(wcte, geo_dir):
    assert wcte.n_pmts == 2014 and wcte.n_modules == 106 and wcte.pmts_per_module == 19
    assert wcte.radius == 155.26 and wcte.half_height == pytest.approx(312.03 / 2)
    assert wcte.pmt_radius == 4.0
    assert np.bincount(wcte.pmt_location[::19]).tolist() == [21, 64, 21]
    assert wcte.image_shape == (14, 16)
    _check_common(wcte)
    _check_barrel_order(wcte)
    assert _module_spread(wcte) < 2 * 22.0
    # Axis y already; rows run 2014 -> 1 in the file; tube t -> PMT t - 1 (mPMT (t-1)//19).
    rows = _raw_rows(geo_dir / "wcte_wcsim_geofile.txt", [1, 1312, 2014])
    for t, row in rows.items():
        assert (row[1] - 1) * 19 + row[2] == t
        np.testing.assert_allclose(wcte.pmt_positions[t - 1], row[3:6], atol=1e-3)
        np.testing.assert_allclose(wcte.pmt_directions[t - 1], row[6:9], atol=1e-6)
    # Barrel row 0 column 0 is mPMT 70 of the file (module 69): azimuth 0 at y = 87 cm; its centre PMT
    # (pmtInMod 1 = channel 0) is tube 1312.
    k = np.flatnonzero(wcte.image_pixel == 5 * 16 + 0)
    assert (k // 19 == 69).all() and len(k) == 19
    centre = _module_centres(wcte)[69]
    assert np.arctan2(centre[2], centre[0]) == pytest.approx(0.0, abs=1e-6)
    assert centre[1] == pytest.approx(87.0, abs=1e-3)
    np.testing.assert_allclose(wcte.pmt_directions[69 * 19], [-1.0, 0.0, 0.0], atol=1e-6)


def test_real_iwcd(iwcd, geo_dir):
    raw = np.load(geo_dir / "iwcd_watchmal_geo.npz")
    assert iwcd.n_pmts == 10184 and iwcd.pmts_per_module == 19 and iwcd.n_modules == 536
    np.testing.assert_allclose(iwcd.pmt_positions, raw["position"], atol=1e-4)  # 1-based, sorted, axis y
    np.testing.assert_allclose(iwcd.pmt_directions, raw["orientation"], atol=1e-6)
    assert iwcd.half_height == pytest.approx(np.abs(raw["position"][:, 1]).max(), abs=1e-3)
    assert iwcd.image_shape == (29, 40)
    assert np.bincount(iwcd.pmt_location[::19]).tolist() == [88, 360, 88]
    _check_common(iwcd)
    _check_barrel_order(iwcd)
    assert _module_spread(iwcd) < 2 * 22.0


def test_real_iwcd_watchmal_image_map(iwcd, geo_dir):
    det = load_geometry(
        geo_dir / "iwcd_watchmal_geo.npz", image_map_path=geo_dir / "iwcd_mpmt_to_row_col.csv"
    )
    assert det.image_shape == (29, 40)
    _check_common(det)
    _check_barrel_order(det)
    # WatChMaL's rows grow with height and its columns shrink with the azimuth: turned by 180 degrees.
    # Module 0 sits in the CSV's row 17, column 39; module 402 in row 0 (the bottom cap), column 17.
    w = 40
    assert divmod(int(det.image_pixel[0]), w) == (28 - 17, 39 - 39)
    assert divmod(int(det.image_pixel[402 * 19]), w) == (28 - 0, 39 - 17)
    barrel = det.pmt_location == 1
    np.testing.assert_array_equal(det.image_pixel[barrel], iwcd.image_pixel[barrel])
