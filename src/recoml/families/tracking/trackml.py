"""Reader of the TrackML challenge CSV format (hits, truth, particles, cells, detectors.csv).

One event is a set of files ``event<9 digits>-{hits,truth,particles,cells}.csv[.gz]`` in a directory;
``detectors.csv[.gz]`` describes the modules. :func:`read_trackml_event` returns one event as flat numpy
arrays named like the event store's fields (``hit_*``, ``particle_*``; docs/design.md, "Event store"), so that
the converter and the GNN tracking code read TrackML through the same checked path. Lengths are in mm,
momenta in GeV, as in the files.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from recoml.errors import DataError, GeometryError

__all__ = [
    "DETECTOR_COLUMNS",
    "HIT_COLUMNS",
    "PARTICLE_COLUMNS",
    "TRUTH_COLUMNS",
    "CELL_COLUMNS",
    "event_number",
    "find_trackml_file",
    "list_trackml_events",
    "normalize_event_id",
    "read_trackml_detectors",
    "read_trackml_event",
]

log = logging.getLogger(__name__)

HIT_COLUMNS = ("hit_id", "x", "y", "z", "volume_id", "layer_id", "module_id")
TRUTH_COLUMNS = ("hit_id", "particle_id", "tx", "ty", "tz", "tpx", "tpy", "tpz", "weight")
PARTICLE_COLUMNS = ("particle_id", "particle_type", "vx", "vy", "vz", "px", "py", "pz", "q", "nhits")
CELL_COLUMNS = ("hit_id", "ch0", "ch1", "value")
DETECTOR_COLUMNS = (
    "volume_id",
    "layer_id",
    "module_id",
    "cx",
    "cy",
    "cz",
    "rot_xu",
    "rot_xv",
    "rot_xw",
    "rot_yu",
    "rot_yv",
    "rot_yw",
    "rot_zu",
    "rot_zv",
    "rot_zw",
    "module_t",
    "module_minhu",
    "module_maxhu",
    "module_hv",
    "pitch_u",
    "pitch_v",
)
MODULE_KEY = ("volume_id", "layer_id", "module_id")
_EVENT_RE = re.compile(r"^(?P<event>event\d+)-hits\.csv(?:\.gz)?$")
_SUFFIXES = (".csv", ".csv.gz")


def event_number(event_id: str) -> int:
    """The integer of an event name (``event000000001`` -> 1)."""
    digits = re.sub(r"\D", "", event_id)
    if not digits:
        raise DataError(
            f"TrackML event name '{event_id}' holds no event number (expected e.g. event000000001)"
        )
    return int(digits)


def normalize_event_id(event_id: str | int) -> str:
    """Accept ``event000000001``, ``000000001`` or ``1`` for the same event."""
    text = str(event_id)
    if text.startswith("event"):
        return text
    if text.isdigit():
        return f"event{int(text):09d}"
    raise DataError(f"TrackML event id '{event_id}' is not of the form event000000001 (or its number)")


def find_trackml_file(directory: str | os.PathLike, stem: str, required: bool = True) -> Path | None:
    """``directory/stem.csv`` or ``stem.csv.gz``, whichever exists (None, or DataError if required)."""
    directory = Path(directory)
    for suffix in _SUFFIXES:
        path = directory / f"{stem}{suffix}"
        if path.is_file():
            return path
    if required:
        raise DataError(f"{directory}: TrackML file '{stem}.csv' (or '{stem}.csv.gz') not found")
    return None


def list_trackml_events(directory: str | os.PathLike) -> list[str]:
    """Sorted names (``event000000001``, ...) of the events whose hits file lies in ``directory``."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: not a directory; expected a directory of TrackML event CSV files")
    events = sorted({m.group("event") for p in directory.iterdir() if (m := _EVENT_RE.match(p.name))})
    return events


def _read_csv(path: Path, columns: Sequence[str], dtypes: dict[str, str] | None = None) -> pd.DataFrame:
    """Read a CSV and check that ``columns`` are present (DataError naming the file and missing columns)."""
    try:
        frame = pd.read_csv(path, dtype=dtypes)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot be read as a CSV table ({exc})") from exc
    except ValueError as exc:  # a column that does not parse as the dtype asked for
        raise DataError(f"{path}: a column holds values of the wrong type ({exc})") from exc
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {missing}; expected {list(columns)}, found {list(frame.columns)}"
        )
    return frame


def read_trackml_detectors(path: str | os.PathLike) -> pd.DataFrame:
    """The module table of ``detectors.csv`` (a file, or a directory holding ``detectors.csv[.gz]``).

    Columns checked against :data:`DETECTOR_COLUMNS`; an unnamed leading index column (as in some copies)
    is dropped. Indexed by nothing; one row per ``(volume_id, layer_id, module_id)``, duplicates refused.
    """
    path = Path(path)
    if path.is_dir():
        path = find_trackml_file(path, "detectors")  # type: ignore[assignment]
    if not path.is_file():
        raise DataError(f"{path}: TrackML detectors file not found")
    frame = _read_csv(path, DETECTOR_COLUMNS)
    frame = frame.drop(columns=[c for c in frame.columns if str(c).startswith("Unnamed")])
    dup = frame.duplicated(list(MODULE_KEY))
    if dup.any():
        row = frame[dup].iloc[0]
        raise GeometryError(
            f"{path}: module (volume_id, layer_id, module_id) = "
            f"({row.volume_id}, {row.layer_id}, {row.module_id}) appears more than once"
        )
    return frame.reset_index(drop=True)


def _resolve_event(directory: Path, event_id: str | int | None) -> str:
    events = list_trackml_events(directory)
    if event_id is None:
        if len(events) != 1:
            raise DataError(
                f"{directory}: holds {len(events)} TrackML events ({events[:5]}...); "
                "pass event_id to choose one"
                if events
                else f"{directory}: no TrackML event found (no file named event<number>-hits.csv[.gz])"
            )
        return events[0]
    name = normalize_event_id(event_id)
    if name not in events:
        raise DataError(f"{directory}: no TrackML event '{name}'; events found: {events[:10]}")
    return name


def _particle_kinematics(px: np.ndarray, py: np.ndarray, pz: np.ndarray) -> dict[str, np.ndarray]:
    """pT, pseudorapidity and azimuth from momentum components (eta finite even at pT = 0)."""
    pt = np.hypot(px, py)
    eta = np.arcsinh(pz / np.maximum(pt, 1e-12))
    phi = np.arctan2(py, px)
    return {"particle_pt": pt, "particle_eta": eta, "particle_phi": phi}


def _cell_features(cells: pd.DataFrame, hit_ids: np.ndarray, path: Path) -> dict[str, np.ndarray]:
    """Per-hit cluster size and summed charge of the hit's cells (0 for a hit without cells)."""
    grouped = cells.groupby("hit_id")["value"].agg(["size", "sum"])
    unknown = grouped.index.difference(pd.Index(hit_ids))
    if len(unknown):
        raise DataError(
            f"{path}: {len(unknown)} cell hit_id(s) are not in the hits file (first: {int(unknown[0])})"
        )
    grouped = grouped.reindex(hit_ids, fill_value=0)
    return {
        "hit_cell_count": grouped["size"].to_numpy(np.int32),
        "hit_cell_value": grouped["sum"].to_numpy(np.float32),
    }


def _module_features(detectors: pd.DataFrame, hits: pd.DataFrame, where: Path) -> dict[str, np.ndarray]:
    """Per-hit geometry of the hit's module: centre, rotation (3x3, local -> global), thickness, pitches."""
    cols = [
        "cx",
        "cy",
        "cz",
        *[f"rot_{a}{b}" for a in "xyz" for b in "uvw"],
        "module_t",
        "pitch_u",
        "pitch_v",
    ]
    table = detectors.set_index(list(MODULE_KEY))[cols]
    keys = pd.MultiIndex.from_frame(hits[list(MODULE_KEY)])
    pos = table.index.get_indexer(keys)
    if (pos < 0).any():
        i = int(np.flatnonzero(pos < 0)[0])
        vol, lay, mod = (int(v) for v in keys[i])
        raise GeometryError(
            f"{where}: hit {int(hits.hit_id.iloc[i])} lies on module "
            f"(volume {vol}, layer {lay}, module {mod}) "
            f"which the detectors file does not describe ({int((pos < 0).sum())} such hits); "
            "the geometry does not match the data"
        )
    rows = table.to_numpy(np.float64)[pos]
    return {
        "hit_module_center": rows[:, 0:3].astype(np.float32),
        "hit_module_rotation": rows[:, 3:12].reshape(-1, 3, 3).astype(np.float32),
        "hit_module_thickness": rows[:, 12].astype(np.float32),
        "hit_pitch_u": rows[:, 13].astype(np.float32),
        "hit_pitch_v": rows[:, 14].astype(np.float32),
    }


def read_trackml_event(
    directory: str | os.PathLike,
    event_id: str | int | None = None,
    *,
    cells: bool = True,
    detectors: pd.DataFrame | None = None,
) -> dict[str, np.ndarray]:
    """One TrackML event as flat arrays named like event-store fields.

    Hits (one row per hit of the hits file, in its order): ``hit_id`` int64, ``hit_x/y/z`` float32 (mm),
    ``hit_volume_id/layer_id/module_id`` int32, ``hit_particle_id`` int64 (0 = noise), ``hit_weight``
    float32, and the true momentum at the hit ``hit_tpx/tpy/tpz`` float32 (GeV; 0 for noise hits, whose
    truth rows hold meaningless numbers). With ``cells`` and a
    cells file: ``hit_cell_count`` int32 and ``hit_cell_value`` float32. With ``detectors`` (from
    :func:`read_trackml_detectors`): the module geometry of each hit (``hit_module_center`` (H,3),
    ``hit_module_rotation`` (H,3,3), ``hit_module_thickness``, ``hit_pitch_u``, ``hit_pitch_v``).

    Particles (rows of particles.csv): ``particle_id`` int64, ``particle_type`` int32 (PDG),
    ``particle_pt/eta/phi`` float32 from the momentum, ``particle_charge`` int32, ``particle_vx/vy/vz``
    float32 (mm), ``particle_nhits`` int32 = number of this event's hits that belong to the particle.

    ``event_id`` may be ``event000000001``, ``000000001`` or ``1``; None picks the only event of the
    directory. A hit without a truth row, a truth particle absent from particles.csv, or a missing column
    raises DataError naming the file.
    """
    directory = Path(directory)
    name = _resolve_event(directory, event_id)
    hits_path = find_trackml_file(directory, f"{name}-hits")
    truth_path = find_trackml_file(directory, f"{name}-truth")
    particles_path = find_trackml_file(directory, f"{name}-particles")
    assert hits_path is not None and truth_path is not None and particles_path is not None

    hits = _read_csv(hits_path, HIT_COLUMNS)
    truth = _read_csv(truth_path, TRUTH_COLUMNS, {"particle_id": "int64"})
    particles = _read_csv(particles_path, PARTICLE_COLUMNS, {"particle_id": "int64"})
    for frame, path in ((hits, hits_path), (truth, truth_path), (particles, particles_path)):
        key = "particle_id" if path is particles_path else "hit_id"
        if frame[key].duplicated().any():
            dup = int(frame[key][frame[key].duplicated()].iloc[0])
            raise DataError(f"{path}: {key} {dup} appears more than once; ids must be unique")

    hit_ids = hits["hit_id"].to_numpy(np.int64)
    truth = truth.set_index("hit_id")
    pos = truth.index.get_indexer(hit_ids)
    if (pos < 0).any():
        missing = hit_ids[pos < 0]
        raise DataError(
            f"{truth_path}: {len(missing)} hit(s) of {hits_path.name} have no truth row "
            f"(first hit_id {int(missing[0])}); every hit needs one (particle_id 0 for noise)"
        )
    if len(truth) > len(hit_ids):
        log.warning(
            "%s: %d truth rows have no hit in %s; ignored", truth_path, len(truth) - len(hit_ids), hits_path
        )
    truth = truth.iloc[pos]
    hit_particle = truth["particle_id"].to_numpy(np.int64)

    particle_ids = particles["particle_id"].to_numpy(np.int64)
    known = np.isin(hit_particle, particle_ids) | (hit_particle == 0)
    if not known.all():
        absent = np.unique(hit_particle[~known])
        raise DataError(
            f"{particles_path}: {len(absent)} particle_id(s) of {truth_path.name} are missing "
            f"(first {int(absent[0])}); every true particle needs a row"
        )
    order = np.argsort(particle_ids, kind="stable")
    owner = order[np.searchsorted(particle_ids[order], hit_particle[hit_particle != 0])]
    counts = np.bincount(owner, minlength=len(particle_ids))
    noise = hit_particle == 0

    out: dict[str, np.ndarray] = {
        "hit_id": hit_ids,
        "hit_x": hits["x"].to_numpy(np.float32),
        "hit_y": hits["y"].to_numpy(np.float32),
        "hit_z": hits["z"].to_numpy(np.float32),
        "hit_volume_id": hits["volume_id"].to_numpy(np.int32),
        "hit_layer_id": hits["layer_id"].to_numpy(np.int32),
        "hit_module_id": hits["module_id"].to_numpy(np.int32),
        "hit_particle_id": hit_particle,
        "hit_weight": truth["weight"].to_numpy(np.float32),
        "hit_tpx": np.where(noise, 0, truth["tpx"].to_numpy(np.float32)).astype(np.float32),
        "hit_tpy": np.where(noise, 0, truth["tpy"].to_numpy(np.float32)).astype(np.float32),
        "hit_tpz": np.where(noise, 0, truth["tpz"].to_numpy(np.float32)).astype(np.float32),
    }
    if cells:
        cells_path = find_trackml_file(directory, f"{name}-cells", required=False)
        if cells_path is not None:
            out.update(_cell_features(_read_csv(cells_path, CELL_COLUMNS), hit_ids, cells_path))
    if detectors is not None:
        out.update(_module_features(detectors, hits, hits_path))

    px, py, pz = (particles[c].to_numpy(np.float64) for c in ("px", "py", "pz"))
    out["particle_id"] = particle_ids
    out["particle_type"] = particles["particle_type"].to_numpy(np.int32)
    out.update({k: v.astype(np.float32) for k, v in _particle_kinematics(px, py, pz).items()})
    out["particle_charge"] = particles["q"].to_numpy(np.int32)
    for axis in "xyz":
        out[f"particle_v{axis}"] = particles[f"v{axis}"].to_numpy(np.float32)
    out["particle_nhits"] = counts.astype(np.int32)
    _check_finite(out, name, directory)
    return out


def _check_finite(arrays: dict[str, np.ndarray], name: str, directory: Path) -> None:
    """Refuse NaN/inf positions or momenta: they would poison graph building and metrics silently."""
    for field, arr in arrays.items():
        if arr.dtype.kind == "f":
            bad = ~np.isfinite(arr)
            if bad.any():
                raise DataError(
                    f"{directory}: event {name} field '{field}' holds {int(bad.sum())} NaN/inf value(s)"
                )
