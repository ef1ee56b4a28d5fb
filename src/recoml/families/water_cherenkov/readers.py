"""Read real water-Cherenkov geometries (WCSim geofiles, the WCTE design JSON, WatChMaL ``.npz``) into a
:class:`WCDetector`.

Every reader returns recoml's convention: cm, tank axis **y**, PMT ``k`` (0-based, as in ``hit_pmt``)
at row ``k``, directions unit and facing into the tank, mPMT ``k // 19`` channel ``k % 19``.
What the files actually hold (checked against the real files in the repository's ``tests/data/geometry``):

* **WCSim old geofile** (``geofile.txt``, e.g. Super-K): line 1 ``radius height nPMT pmtRadius``,
  line 2 the centre offset, then ``tube x y z dx dy dz cylLoc`` per tube. WCSim writes as "radius" the
  cylindrical radius of tube 2 (for Super-K an outer-detector tube: 1886.01 cm) and as "height" the
  *full* height of the tank (3620 = 2 x 1810 cm; the column is often called halfheight, but the inner
  caps' tubes sit at z = +-1818.9 cm). The tank axis is **z**: the reader rotates by -90 degrees about
  x, ``(x, y, z) -> (x, z, -y)``. ``cylLoc`` is 0 top, 1 barrel, 2 bottom and 3 for a tube facing out
  (outer detector, OD); WCSim derives it from the stored orientation. In the Super-K file the inner
  (ID) and outer tubes alternate: odd ids are the 11,146 ID tubes, even ids the 11,146 OD tubes. The
  24 tubes of the barrel's "extra tower" next to the caps (ids 14389-14400 and 18785-18796) are
  broken: their stored orientation is about +z and the even (OD) ones sit at the ID radius, so 12 of
  them carry a wrong cylLoc (the 6 top ID ones say 3, the 6 bottom OD ones say 2). When cylLoc and the
  alternation agree on more than 99% of the tubes, the alternation decides; the 12 kept ID tubes get
  the inward wall normal as direction (both logged as warnings).
  Keeping the inner detector alone, the radius is that of the smallest cylinder around the kept tubes
  (Super-K: 1697.8 cm; its ID wall is at 1690) and the half height the header's height / 2 (1810 cm).
* **WCSim newer geofile** (mPMT detectors, e.g. WCTE): text header lines (``Detector radius & height``
  gives the radius and the *full* height; ``Type 1 ID PMT number & size`` the count and the PMT
  radius; ``Type 2 ...`` may hold a garbage number, which is ignored; ``Centre offset``), then
  ``tube mPMT pmtInMod x y z dx dy dz cylLoc``. The WCTE file's axis is already **y**; its rows run
  from tube 2014 down to 1 (sorted here); ``tube = (mPMT - 1) * 19 + pmtInMod`` holds, with pmtInMod 1
  the centre PMT, 2-7 the inner ring and 8-19 the outer ring. Its cylLoc is 1 for every tube, so cap or
  barrel is taken from the geometry (a warning says so).
* **WatChMaL .npz** (``tube_no``, ``position``, ``orientation``): no header; IWCD's file is 1-based,
  sorted, axis **y**, 536 mPMTs x 19 in consecutive ids (channel 18 the centre). Radius and half height
  are those of the smallest cylinder around the PMTs.
* **WCTE design geometry JSON** (what ``Device.save_json`` of the WCTE ``Geometry`` package writes,
  github.com/WCTE/Geometry): ``{"description": {...}, "mpmts": {"<mPMT>": {"placement": ...,
  "pmts": {"<PMT>": {"properties": {"size": <diameter mm>, ...}, "placement": {"location": [x, y, z],
  "direction_x": [...], "direction_z": [...]}}}}}}``, in **mm**, in the coordinate system of the WCD
  (axis **y**, origin not at the tank centre). A PMT faces along its ``direction_z``; PMT ``k`` is mPMT
  ``k // 19`` channel ``k % 19`` in the file's mPMT and PMT numbering (both 0-based, PMT 0 the centre
  one), kept as the sensor ids ``(mpmt, pmt)``. Positions are converted to cm and shifted so the centre
  of the PMTs' bounding box is the origin (logged, like a WCSim centre offset); the PMT radius is half
  the PMTs' ``size``. The file may be gzipped (as any text geometry here).

Tube ids may come in any order and start at 0 or 1; PMT ``k`` is the tube with id ``base + k``. Ids must
be unique and contiguous, except that keeping only the inner detector of a file that also lists outer
tubes renumbers the inner tubes ``0..P-1`` in id order (:func:`read_tube_table` returns the original
ids, for converting WCSim hit tube ids).
"""

from __future__ import annotations

import gzip
import json
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recoml.errors import DataError, GeometryError
from recoml.families.water_cherenkov.detector import WCDetector
from recoml.families.water_cherenkov.image_map import (
    BOTTOM,
    TOP,
    cylinder_location,
    image_map_from_positions,
    read_image_map_csv,
)
from recoml.families.water_cherenkov.wcsim_raw import read_geometry

log = logging.getLogger(__name__)

SENSOR_CHOICES = ("inner", "outer", "all")
MPMT_SIZE = 19
OUTER_LOC = 3
# Rotations taking the file's tank axis onto y (proper rotations, det = +1).
_TO_Y = {
    "y": np.eye(3),
    "z": np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]]),  # (x, y, z) -> (x, z, -y)
    "x": np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),  # (x, y, z) -> (-y, x, z)
}
_MIN_INWARD = 0.2  # a stored direction this far from the wall normal (~78 deg) counts as broken


@dataclass(frozen=True, eq=False)
class TubeTable:
    """The tubes of a geometry file in recoml's convention, before the image map is made.

    ``tube_id[k]`` is the file's id of PMT ``k``: a converter maps WCSim hit tube ids to recoml's
    ``hit_pmt`` with ``np.searchsorted(table.tube_id, ids)``.
    """

    path: Path
    tube_id: np.ndarray  # (P,) int64, ascending, as in the file
    positions: np.ndarray  # (P, 3) float64, cm, tank axis y
    directions: np.ndarray  # (P, 3) float64, unit; facing into the tank (outer tubes: out of it)
    location: np.ndarray  # (P,) int8: 0 top cap, 1 barrel, 2 bottom cap (per module)
    outer: np.ndarray  # (P,) bool: outer-detector (veto) tube
    pmts_per_module: int
    radius: float
    half_height: float
    pmt_radius: float
    file_axis: str  # the file's tank axis ("x", "y" or "z") before rotation
    sensor_ids: np.ndarray  # (P, K) int64: the file's identifiers of each tube (see sensor_id_names)
    sensor_id_names: tuple[str, ...]  # ("tube",), ("outer", "tube") or ("tube", "mpmt", "pmt")


@dataclass
class _Raw:
    """A file's columns as stored (file axes, file order)."""

    ids: np.ndarray
    pos: np.ndarray
    dirs: np.ndarray
    cylloc: np.ndarray | None = None
    module: np.ndarray | None = None
    pmt_in_module: np.ndarray | None = None
    radius: float | None = None
    height: float | None = None  # full height
    pmt_radius: float | None = None
    offset: np.ndarray | None = None
    section: np.ndarray | None = None  # 0 inner, 1 outer: a section whose tube ids start again from 1
    module_ids_only: bool = False  # the file names PMTs by (module, PMT in module) only, no tube id


def load_geometry(
    path: str | Path,
    name: str | None = None,
    pmts_per_module: int | None = None,
    *,
    sensors: str = "inner",
    image_map_path: str | Path | None = None,
    axis: str | None = None,
    pmt_radius: float | None = None,
) -> WCDetector:
    """Read a WCSim geofile (old or mPMT format), a WCTE design JSON or a WatChMaL ``.npz`` into a
    :class:`WCDetector`.

    ``sensors="inner"`` keeps the inner-detector tubes only (the usual input of reconstruction),
    ``"outer"`` the outer-detector (veto) tubes only, ``"all"`` both (the outer image below the inner
    one). ``pmts_per_module``: 19 for
    mPMTs, 1 for single PMTs; by default from the file's mPMT columns, or for a ``.npz`` inferred from
    the tube count and layout. ``image_map_path``: a WatChMaL module -> (row, col) CSV to use instead of
    the computed map. ``axis`` forces the file's tank axis ("x", "y", "z") instead of detecting it;
    ``pmt_radius`` (cm) overrides the file's. See the module docstring for what each format holds.
    """
    path = Path(path)
    table = read_tube_table(path, sensors=sensors, pmts_per_module=pmts_per_module, axis=axis)
    ppm = table.pmts_per_module
    centres = table.positions.reshape(-1, ppm, 3).mean(axis=1)
    mod_loc = table.location[::ppm]
    mod_outer = table.outer[::ppm]
    note = ""
    pixel: np.ndarray | None
    try:
        if image_map_path is not None:
            pixel, shape = read_image_map_csv(image_map_path, len(centres), centres)
        else:
            pixel, shape = _stacked_image_map(centres, mod_loc, mod_outer, table.half_height, table.radius)
    except GeometryError as err:
        if image_map_path is not None:
            raise GeometryError(f"{path}: {err}") from err
        # Graphs and point clouds need no image: keep the geometry, say why images are unavailable.
        note = str(err)
        log.warning("%s: no image map (%s); graph and point-cloud models still work", path, err)
        pixel, shape = None, None
    return WCDetector(
        name=name or path.stem,
        radius=table.radius,
        half_height=table.half_height,
        pmt_positions=table.positions.astype(np.float32),
        pmt_directions=table.directions.astype(np.float32),
        pmt_radius=float(pmt_radius if pmt_radius is not None else table.pmt_radius),
        pmts_per_module=ppm,
        image_pixel=None if pixel is None else np.repeat(pixel, ppm).astype(np.int64),
        image_shape=shape,
        image_map_note=note,
        pmt_location=table.location.astype(np.int8),
        sensor_ids=table.sensor_ids,
        sensor_id_names=table.sensor_id_names,
    )


def to_detector_frame(vectors: np.ndarray, file_axis: str) -> np.ndarray:
    """Vectors ``(..., 3)`` of a geometry file's frame (event vertices, directions) turned as
    :func:`load_geometry` turns the file's tubes: its tank axis ``file_axis`` onto y."""
    return np.asarray(vectors, dtype=np.float64) @ _TO_Y[file_axis].T


def read_tube_table(
    path: str | Path, *, sensors: str = "inner", pmts_per_module: int | None = None, axis: str | None = None
) -> TubeTable:
    """Read, check, sort, select and rotate the tubes of a geometry file (see :func:`load_geometry`)."""
    path = Path(path)
    if sensors not in SENSOR_CHOICES:
        raise GeometryError(f"{path}: sensors must be one of {list(SENSOR_CHOICES)}, got {sensors!r}")
    if axis is not None and axis not in _TO_Y:
        raise GeometryError(f"{path}: axis must be 'x', 'y' or 'z', got {axis!r}")
    raw = _parse(path)
    _split_sections(path, raw)
    _check_units(path, raw)
    section = raw.section if raw.section is not None else np.zeros(len(raw.ids), dtype=np.int64)
    ids_by_row = np.empty(len(raw.ids), dtype=np.int64)
    for s in np.unique(section):
        ids_by_row[section == s] = _sorted_ids(path, raw.ids[section == s], s)
    order = np.lexsort((ids_by_row, section))
    ids, section = ids_by_row[order], section[order]
    pos, dirs = raw.pos[order].astype(np.float64), raw.dirs[order].astype(np.float64)
    cylloc = None if raw.cylloc is None else raw.cylloc[order]
    module_ids = None
    if raw.module is not None and raw.pmt_in_module is not None:  # both come from mPMT tube tables
        module_ids = np.stack([raw.module[order], raw.pmt_in_module[order]], axis=1).astype(np.int64)
    ppm = _pmts_per_module(path, raw, order, ids, pos, pmts_per_module)
    if raw.offset is not None and np.any(raw.offset != 0):
        log.warning(
            "%s: subtracting the centre offset %s cm; shift event vertices likewise", path, raw.offset
        )
        pos = pos - raw.offset

    outer = section == 1 if raw.section is not None else _outer_tubes(path, ids, cylloc)
    has_outer = bool(outer.any())
    if sensors == "outer" and not has_outer:
        raise GeometryError(f"{path}: sensors=outer but the file lists no outer-detector tubes")
    if sensors != "all" and has_outer:
        sel = outer if sensors == "outer" else ~outer
        log.info(
            "%s: keeping the %d %s tubes of %d; PMT k is the k-th of them in id order",
            path, sel.sum(), sensors, len(ids),
        )  # fmt: skip
        ids, pos, dirs, outer, section = ids[sel], pos[sel], dirs[sel], outer[sel], section[sel]
        cylloc = None if cylloc is None else cylloc[sel]
        module_ids = None if module_ids is None else module_ids[sel]
    if len(ids) % ppm:
        raise GeometryError(f"{path}: {len(ids)} tubes is not a whole number of modules of {ppm}")

    norms = np.linalg.norm(dirs, axis=1)
    if (norms < 1e-6).any():
        bad = int(ids[np.argmax(norms < 1e-6)])
        raise GeometryError(f"{path}: tube {bad} has a zero direction vector (dx, dy, dz)")
    dirs = dirs / norms[:, None]

    file_axis = axis or _detect_axis(pos[~outer] if (~outer).any() else pos)
    if file_axis != "y":
        log.info("%s: tank axis is %s in the file; rotating it onto y", path, file_axis)
        rot = _TO_Y[file_axis]
        pos, dirs = pos @ rot.T, dirs @ rot.T

    location = np.empty(len(ids), dtype=np.int8)
    for part in (~outer, outer):
        if part.any():
            location[part] = _locate(pos[part], dirs[part], ppm)
    _check_cylloc(path, ids, location, cylloc, outer)
    dirs[~outer] = _inward(path, ids[~outer], pos[~outer], dirs[~outer], location[~outer], ppm)

    inner_pos = pos[~outer] if (~outer).any() else pos
    rho = np.hypot(inner_pos[:, 0], inner_pos[:, 2])
    if raw.radius is not None and (sensors == "all" or not has_outer):
        radius = float(raw.radius)
    else:
        radius = float(rho.max())
    half_height = float(raw.height) / 2 if raw.height is not None else float(np.abs(inner_pos[:, 1]).max())
    id_names: tuple[str, ...]
    if module_ids is not None and raw.module_ids_only:
        sensor_ids, id_names = module_ids, ("mpmt", "pmt")
    elif module_ids is not None:
        sensor_ids, id_names = np.column_stack([ids, module_ids]), ("tube", "mpmt", "pmt")
    elif raw.section is not None and sensors == "all":
        sensor_ids, id_names = np.column_stack([section, ids]), ("outer", "tube")
    else:
        sensor_ids, id_names = ids[:, None], ("tube",)
    pmt_radius = raw.pmt_radius
    if pmt_radius is None:
        pmt_radius = 4.0 if ppm == MPMT_SIZE else 25.4
        log.info("%s: no PMT size in the file; assuming a PMT radius of %.1f cm", path, pmt_radius)
    return TubeTable(
        path=path,
        tube_id=ids.astype(np.int64),
        positions=pos,
        directions=dirs,
        location=location,
        outer=outer,
        pmts_per_module=ppm,
        radius=radius,
        half_height=half_height,
        pmt_radius=float(pmt_radius),
        file_axis=file_axis,
        sensor_ids=sensor_ids.astype(np.int64),
        sensor_id_names=id_names,
    )


# --------------------------------------------------------------------------------------------- parsing


def _parse(path: Path) -> _Raw:
    """Dispatch on content: a zip archive is a WatChMaL .npz, a ROOT file raw WCSim output (its geometry
    tree), a JSON object the WCTE design geometry, any other text a WCSim geofile (text formats may be
    gzipped)."""
    if not path.is_file():
        raise GeometryError(f"{path}: geometry file not found")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise GeometryError(f"{path}: cannot read the geometry file ({err})") from err
    if data[:4] == b"PK\x03\x04" or path.suffix == ".npz":
        return _parse_npz(path)
    if data[:4] == b"root":
        return _parse_wcsim_root(path)
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as err:
            raise GeometryError(f"{path}: a gzip file that cannot be decompressed ({err})") from err
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise GeometryError(
            f"{path}: not a text WCSim geofile, a WCTE JSON geometry nor a WatChMaL .npz "
            f"(undecodable byte at {err.start})"
        ) from err
    if text.lstrip().startswith("{"):
        return _parse_wcte_json(path, text)
    lines = text.splitlines()
    numbered = [(i, line.split()) for i, line in enumerate(lines, start=1) if line.strip()]
    if not numbered:
        raise GeometryError(f"{path}: the geometry file is empty")
    first = numbered[0][1]
    if len(first) == 4 and all(_is_number(t) for t in first):
        return _parse_wcsim_old(path, numbered)
    return _parse_wcsim_mpmt(path, numbered)


def _parse_wcsim_root(path: Path) -> _Raw:
    """Raw WCSim output: the PMTs of its ``wcsimGeoT`` geometry tree (the geometry its events used)."""
    try:
        pmts = read_geometry(path)
    except DataError as err:
        raise GeometryError(str(err)) from None
    return _Raw(ids=pmts["tube"], pos=pmts["position"], dirs=pmts["direction"], cylloc=pmts["cylloc"])


def _parse_npz(path: Path) -> _Raw:
    """WatChMaL geometry: ``tube_no (P,)``, ``position (P, 3)``, ``orientation (P, 3)``."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: np.asarray(data[k]) for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise GeometryError(f"{path}: cannot read as a WatChMaL .npz ({err})") from err
    for key in ("tube_no", "position", "orientation"):
        if key not in arrays:
            raise GeometryError(f"{path}: missing array {key!r} (have {sorted(arrays)})")
    n = len(arrays["tube_no"])
    if arrays["tube_no"].shape != (n,):
        raise GeometryError(f"{path}: tube_no must have shape (P,), got {arrays['tube_no'].shape}")
    for key in ("position", "orientation"):
        if arrays[key].shape != (n, 3):
            raise GeometryError(f"{path}: {key} must have shape ({n}, 3), got {arrays[key].shape}")
    return _Raw(ids=arrays["tube_no"], pos=arrays["position"], dirs=arrays["orientation"])


def _parse_wcte_json(path: Path, text: str) -> _Raw:
    """The WCTE ``Geometry`` package's JSON (``save_json``): mPMTs, each with its PMTs' placements (mm)."""
    try:
        info = json.loads(text)
    except json.JSONDecodeError as err:
        raise GeometryError(f"{path}: not valid JSON (line {err.lineno}: {err.msg})") from err
    mpmts = info.get("mpmts") if isinstance(info, dict) else None
    if not isinstance(mpmts, dict) or not mpmts:
        raise GeometryError(
            f"{path}: a JSON geometry needs an 'mpmts' object (the WCTE Geometry package's save_json), "
            f"found keys {sorted(info) if isinstance(info, dict) else type(info).__name__}"
        )
    rows = [row for name, mpmt in mpmts.items() for row in _json_pmts(path, name, mpmt)]
    module = np.array([r[0] for r in rows], dtype=np.int64)
    pim = np.array([r[1] for r in rows], dtype=np.int64)
    counts = np.bincount(module - module.min())
    ppm = int(counts.max())
    if (counts[counts > 0] != ppm).any() or set(pim.tolist()) != set(range(ppm)):
        found = sorted(set(counts[counts > 0].tolist()))
        raise GeometryError(f"{path}: every mPMT must list PMTs 0..{ppm - 1}; found mPMTs with {found} PMTs")
    pos = np.array([r[2] for r in rows]) / 10.0  # mm -> cm
    sizes = [r[4] for r in rows if r[4] is not None]
    return _Raw(
        ids=module * ppm + pim,
        module=module,
        pmt_in_module=pim,
        pos=pos,
        dirs=np.array([r[3] for r in rows]),
        pmt_radius=max(sizes) / 20.0 if sizes else None,  # diameter mm -> radius cm
        offset=(pos.min(axis=0) + pos.max(axis=0)) / 2,  # the WCD's origin is not the tank centre
        module_ids_only=True,
    )


def _json_pmts(
    path: Path, m_name: str, mpmt: Any
) -> list[tuple[int, int, list[float], list[float], float | None]]:
    """``(mPMT, PMT, location mm, facing direction, size mm)`` of every PMT of one mPMT of a JSON file."""
    pmts = mpmt.get("pmts") if isinstance(mpmt, dict) else None
    if not isinstance(pmts, dict) or not pmts:
        raise GeometryError(
            f"{path}: mPMT {m_name!r} lists no PMTs; write the file with save_json(devices='mpmts') "
            "or devices='all'"
        )
    out = []
    for p_name, pmt in pmts.items():
        where = f"{path}: mPMT {m_name} PMT {p_name}"
        place = pmt.get("placement") if isinstance(pmt, dict) else None
        if not isinstance(place, dict) or "location" not in place or "direction_z" not in place:
            raise GeometryError(
                f"{where} has no placement (location, direction_z); write the file with a place_info "
                "('design', 'est', ...)"
            )
        if not (str(m_name).isdigit() and str(p_name).isdigit()):
            raise GeometryError(f"{where}: mPMT and PMT names must be integers")
        try:
            loc, facing = [float(v) for v in place["location"]], [float(v) for v in place["direction_z"]]
        except (TypeError, ValueError) as err:
            raise GeometryError(f"{where}: non-numeric placement ({err})") from err
        if len(loc) != 3 or len(facing) != 3:
            raise GeometryError(f"{where}: location and direction_z need 3 values each")
        size = (pmt.get("properties") or {}).get("size")
        diameter = float(size) if isinstance(size, (int, float)) and not isinstance(size, bool) else None
        out.append((int(m_name), int(p_name), loc, facing, diameter))
    return out


def _parse_wcsim_old(path: Path, numbered: list[tuple[int, list[str]]]) -> _Raw:
    """``radius height nPMT pmtRadius`` / centre offset / ``tube x y z dx dy dz cylLoc`` rows."""
    (_, head), rest = numbered[0], numbered[1:]
    if not rest or len(rest[0][1]) != 3 or not all(_is_number(t) for t in rest[0][1]):
        line = rest[0][0] if rest else numbered[0][0] + 1
        raise GeometryError(f"{path}: line {line} must be the centre offset 'x y z' of a WCSim geofile")
    radius, height, n_pmt, pmt_radius = (float(t) for t in head)
    table = _table(path, rest[1:], 8, "tube x y z dx dy dz cylLoc")
    restart = _restarts(table[:, 0])
    inner_count = restart if restart is not None else len(table)
    if int(n_pmt) not in (len(table), inner_count):
        raise GeometryError(f"{path}: the header announces {int(n_pmt)} tubes, the table has {len(table)}")
    return _Raw(
        ids=table[:, 0],
        pos=table[:, 1:4],
        dirs=table[:, 4:7],
        cylloc=table[:, 7].astype(np.int64),
        radius=radius,
        height=height,
        pmt_radius=pmt_radius,
        offset=np.array([float(t) for t in rest[0][1]]),
    )


def _parse_wcsim_mpmt(path: Path, numbered: list[tuple[int, list[str]]]) -> _Raw:
    """Text header lines (label then numbers), then ``tube mPMT pmtInMod x y z dx dy dz cylLoc`` rows."""
    start = next((i for i, (_, tok) in enumerate(numbered) if _is_number(tok[0])), None)
    if start is None:
        raise GeometryError(f"{path}: no tube table found (expected a WCSim geofile or a WatChMaL .npz)")
    header: dict[str, Any] = {}
    garbage = False
    for lineno, tokens in numbered[:start]:
        values: list[str] = []
        while tokens and _is_number(tokens[-1]):
            values.insert(0, tokens.pop())
        label = " ".join(tokens).lower()
        try:
            if label.startswith("detector radius") and len(values) == 2:
                header["radius"], header["height"] = float(values[0]), float(values[1])
            elif label.startswith("centre offset") and len(values) == 3:
                header["offset"] = np.array([float(v) for v in values])
            elif "pmt number" in label and len(values) == 2 and _is_count(values[0]):
                header[label] = (int(float(values[0])), float(values[1]))
            elif "pmt number" in label:
                garbage = True
                log.warning("%s: line %d (%r) holds no usable count; ignored", path, lineno, label)
        except ValueError:
            garbage = True
            log.warning("%s: line %d cannot be read; ignored", path, lineno)
    table = _table(path, numbered[start:], 10, "tube mPMT pmtInMod x y z dx dy dz cylLoc")
    counts = [v[0] for k, v in header.items() if "pmt number" in k]
    if counts and sum(counts) != len(table):
        msg = f"{path}: the header announces {sum(counts)} tubes, the table has {len(table)}"
        if not garbage:
            raise GeometryError(msg)
        log.warning("%s", msg)
    sizes = [v[1] for k, v in header.items() if k.startswith("type 1") and v[0] > 0]
    return _Raw(
        ids=table[:, 0],
        module=table[:, 1],
        pmt_in_module=table[:, 2],
        pos=table[:, 3:6],
        dirs=table[:, 6:9],
        cylloc=table[:, 9].astype(np.int64),
        radius=header.get("radius"),
        height=header.get("height"),
        pmt_radius=sizes[0] if sizes else None,
        offset=header.get("offset"),
    )


def _table(path: Path, rows: list[tuple[int, list[str]]], ncol: int, columns: str) -> np.ndarray:
    """The numeric table, with the line number of the first row that has the wrong shape or a non-number."""
    if not rows:
        raise GeometryError(f"{path}: no tube rows after the header (expected '{columns}')")
    out = np.empty((len(rows), ncol), dtype=np.float64)
    for i, (lineno, tokens) in enumerate(rows):
        if len(tokens) != ncol:
            raise GeometryError(
                f"{path}: line {lineno} has {len(tokens)} columns, expected {ncol} ('{columns}')"
            )
        try:
            out[i] = [float(t) for t in tokens]
        except ValueError as err:
            raise GeometryError(f"{path}: line {lineno} is not numeric ({err})") from err
    if not np.isfinite(out).all():
        bad = rows[int(np.argmax(~np.isfinite(out).all(axis=1)))][0]
        raise GeometryError(f"{path}: line {bad} holds a non-finite number")
    return out


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _is_count(token: str) -> bool:
    """A plausible tube count (WCTE's "Type 2" line holds a 240-digit number)."""
    value = float(token)
    return value.is_integer() and 0 <= value <= 1e7


# ------------------------------------------------------------------------------------------- checking


def _restarts(ids: np.ndarray) -> int | None:
    """The row where the tube numbering starts again from its first id (an outer-detector section listed
    after the inner tubes, as in Hyper-K geofiles), or ``None``."""
    ids = np.asarray(ids)
    if len(ids) < 2 or len(np.unique(ids)) == len(ids):
        return None
    again = np.flatnonzero(ids[1:] == ids[0]) + 1
    return int(again[0]) if len(again) == 1 and ids[0] == ids.min() else None


def _split_sections(path: Path, raw: _Raw) -> None:
    """Mark the rows of an outer-detector section numbered again from 1 (section 1)."""
    row = _restarts(raw.ids)
    if row is None:
        return
    raw.section = np.zeros(len(raw.ids), dtype=np.int64)
    raw.section[row:] = 1
    log.info(
        "%s: tube ids start again at row %d: %d inner tubes, then %d outer-detector tubes numbered from %d",
        path, row, row, len(raw.ids) - row, int(raw.ids[row]),
    )  # fmt: skip


#: Plausible sizes in cm: a PMT's radius (3-inch to 50 cm PMTs) and a tank's radius / full height
#: relative to the largest tube coordinate.
_PMT_RADIUS_CM = (1.0, 40.0)
_TANK_TO_TUBES = (0.3, 3.0)


def _check_units(path: Path, raw: _Raw) -> None:
    """Header sizes in mm are converted to cm (positions are cm); an implausible size is refused."""
    extent = float(np.abs(raw.pos).max()) if len(raw.pos) else 0.0
    checks = [("PMT radius", "pmt_radius", _PMT_RADIUS_CM)]
    if extent > 0:
        lo, hi = _TANK_TO_TUBES
        checks += [("tank radius", "radius", (lo * extent, hi * extent))]
        checks += [("tank height", "height", (lo * extent, 2 * hi * extent))]
    for label, attr, (lo, hi) in checks:
        value = getattr(raw, attr)
        if value is None or lo <= value <= hi:
            continue
        if lo <= value / 10 <= hi:
            log.warning("%s: the header's %s %.2f is in mm; using %.2f cm", path, label, value, value / 10)
            setattr(raw, attr, value / 10)
            continue
        raise GeometryError(
            f"{path}: the header's {label} {value:g} is implausible in cm or mm "
            f"(expected {lo:.3g}-{hi:.3g} cm given tubes up to {extent:.0f} cm from the centre)"
        )


def _sorted_ids(path: Path, ids: np.ndarray, section: int = 0) -> np.ndarray:
    """Integer ids of one section, unique, starting at 0 or 1 and contiguous (PMT k = id - base)."""
    where = "" if section == 0 else " in the outer-detector section"
    ids = np.asarray(ids)
    if ids.dtype.kind == "f":
        if not np.all(ids == np.round(ids)):
            raise GeometryError(f"{path}: tube ids must be integers")
    ids = ids.astype(np.int64)
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1][:5].tolist()
        raise GeometryError(f"{path}: duplicate tube ids {dup}{where}; each tube id must appear once")
    base = int(uniq[0])
    if base not in (0, 1):
        raise GeometryError(f"{path}: tube ids{where} must start at 0 or 1, the smallest is {base}")
    expected = np.arange(base, base + len(uniq))
    if not np.array_equal(uniq, expected):
        missing = int(expected[np.argmax(uniq != expected)])
        raise GeometryError(
            f"{path}: tube ids{where} must be contiguous from {base}; id {missing} is missing"
        )
    return ids


def _pmts_per_module(
    path: Path, raw: _Raw, order: np.ndarray, ids: np.ndarray, pos: np.ndarray, requested: int | None
) -> int:
    """19 for mPMT files (checking tube = module * 19 + pmtInMod), else the request or an inference."""
    if raw.module is not None and raw.pmt_in_module is not None:  # both come from mPMT tube tables
        module = raw.module[order].astype(np.int64)
        pim = raw.pmt_in_module[order].astype(np.int64)
        module, pim = module - module.min(), pim - pim.min()
        ppm = int(pim.max()) + 1
        if requested is not None and requested != ppm:
            raise GeometryError(f"{path}: pmts_per_module={requested} but the file has {ppm} PMTs per mPMT")
        k = ids - ids[0]
        bad = np.flatnonzero(module * ppm + pim != k)
        if len(bad):
            t = int(ids[bad[0]])
            raise GeometryError(
                f"{path}: tube {t} is mPMT {int(raw.module[order][bad[0]])} PMT "
                f"{int(raw.pmt_in_module[order][bad[0]])}, but hit ids need tube = mPMT * {ppm} + pmtInMod"
            )
        return ppm
    if requested is not None:
        if requested < 1:
            raise GeometryError(f"{path}: pmts_per_module must be >= 1, got {requested}")
        return int(requested)
    if raw.cylloc is None and len(ids) % MPMT_SIZE == 0 and _compact_modules(pos, MPMT_SIZE):
        log.info("%s: %d PMTs in compact groups of %d: reading as mPMTs", path, len(ids), MPMT_SIZE)
        return MPMT_SIZE
    return 1


def _compact_modules(pos: np.ndarray, ppm: int) -> bool:
    """Whether consecutive groups of ``ppm`` PMTs are tight clusters, well apart from each other."""
    groups = pos.reshape(-1, ppm, 3)
    centres = groups.mean(axis=1)
    spread = np.linalg.norm(groups - centres[:, None], axis=2).max()
    sample = centres[:: max(1, len(centres) // 200)]
    d = np.linalg.norm(sample[:, None] - centres[None], axis=2)
    d[d == 0] = np.inf
    return bool(spread < 0.5 * np.median(d.min(axis=1)))


def _outer_tubes(path: Path, ids: np.ndarray, cylloc: np.ndarray | None) -> np.ndarray:
    """Outer-detector flag: cylLoc 3, or the ID/OD alternation of tube ids when it agrees with cylLoc."""
    if cylloc is None:
        return np.zeros(len(ids), dtype=bool)
    by_loc = cylloc >= OUTER_LOC
    if not by_loc.any():
        return by_loc
    by_parity = (ids - ids[0]) % 2 == 1
    agree = by_parity == by_loc
    if by_parity.sum() == (~by_parity).sum() and agree.mean() > 0.99:
        if not agree.all():
            log.warning(
                "%s: %d tubes have a cylLoc that contradicts the alternating inner/outer numbering "
                "(first ids %s); the stored orientation of these tubes is broken, using the numbering",
                path,
                int((~agree).sum()),
                ids[~agree][:6].tolist(),
            )
        return by_parity
    return by_loc


def _detect_axis(pos: np.ndarray) -> str:
    """The coordinate around which the mid-height tubes form the thinnest cylindrical shell."""
    scores = {}
    for a, name in enumerate("xyz"):
        h = pos[:, a]
        other = np.delete(pos, a, axis=1)
        mid = np.abs(h) < 0.5 * np.abs(h).max()
        rho = np.hypot(other[mid, 0], other[mid, 1])
        scores[name] = float(rho.std() / rho.mean()) if mid.sum() >= 3 and rho.mean() > 0 else np.inf
    best = min(scores, key=scores.__getitem__)
    log.debug("tank axis scores (relative spread of the barrel radius): %s", scores)
    return best


def _locate(pos: np.ndarray, dirs: np.ndarray, ppm: int) -> np.ndarray:
    """Per-PMT location from its module's centre and mean direction."""
    centres = pos.reshape(-1, ppm, 3).mean(axis=1)
    mean_dir = dirs.reshape(-1, ppm, 3).mean(axis=1)
    mean_dir /= np.linalg.norm(mean_dir, axis=1, keepdims=True) + 1e-12
    # Directions only break ties near the caps; broken ones (WCSim extra tower) sit far from the caps.
    return np.repeat(cylinder_location(centres, np.where(np.isfinite(mean_dir), mean_dir, 0.0)), ppm)


def _check_cylloc(
    path: Path, ids: np.ndarray, location: np.ndarray, cylloc: np.ndarray | None, outer: np.ndarray
) -> None:
    """Warn where the file's cylLoc (0/1/2) disagrees with the geometry, which wins."""
    if cylloc is None:
        return
    inner = ~outer & (cylloc < OUTER_LOC)
    bad = inner & (cylloc != location)
    if bad.any():
        log.warning(
            "%s: cylLoc of %d of %d inner tubes disagrees with their position (first ids %s); "
            "using the position (0 top, 1 barrel, 2 bottom)",
            path,
            int(bad.sum()),
            int(inner.sum()),
            ids[bad][:6].tolist(),
        )


def _inward(
    path: Path, ids: np.ndarray, pos: np.ndarray, dirs: np.ndarray, location: np.ndarray, ppm: int
) -> np.ndarray:
    """Directions facing into the tank: flip a file that stores outward ones, repair broken tubes."""
    if len(dirs) == 0:
        return dirs
    centres = np.repeat(pos.reshape(-1, ppm, 3).mean(axis=1), ppm, axis=0)
    normal = np.zeros_like(pos)
    rho = np.hypot(centres[:, 0], centres[:, 2]) + 1e-12
    normal[:, 0], normal[:, 2] = -centres[:, 0] / rho, -centres[:, 2] / rho
    normal[location == TOP] = (0.0, -1.0, 0.0)
    normal[location == BOTTOM] = (0.0, 1.0, 0.0)
    dot = np.einsum("ij,ij->i", dirs, normal)
    if np.median(dot) < 0:
        log.info("%s: the file stores outward-facing directions; flipping them", path)
        dirs, dot = -dirs, -dot
    broken = dot <= _MIN_INWARD
    if broken.any():
        log.warning(
            "%s: %d tubes have a direction far from the wall normal (first ids %s); "
            "replacing it by the inward wall normal",
            path,
            int(broken.sum()),
            ids[broken][:6].tolist(),
        )
        dirs = dirs.copy()
        dirs[broken] = normal[broken]
    return dirs


def _stacked_image_map(
    centres: np.ndarray, location: np.ndarray, outer: np.ndarray, half_height: float, radius: float
) -> tuple[np.ndarray, tuple[int, int]]:
    """The inner detector's image map, with the outer detector's (if kept) stacked below it."""
    parts = [m for m in (~outer, outer) if m.any()]
    maps = [image_map_from_positions(centres[m], half_height, radius, location[m]) for m in parts]
    width = max(shape[1] for _, shape in maps)
    pixel = np.empty(len(centres), dtype=np.int64)
    row0 = 0
    for m, (pix, (h, w)) in zip(parts, maps):
        pixel[m] = (row0 + pix // w) * width + pix % w + (width - w) // 2
        row0 += h
    return pixel, (row0, width)
