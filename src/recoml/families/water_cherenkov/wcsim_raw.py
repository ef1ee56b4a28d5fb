"""Raw WCSim output (``wcsimT`` of ``WCSimRootEvent``, ``wcsimGeoT`` of ``WCSimRootGeom``) read with uproot.

WCSim writes its hits, digits, tracks and PMTs as ``TClonesArray`` members of its event and geometry
classes. ROOT streams such arrays *member-wise* (every object's first member, then every object's second
member, ...), which uproot's ``TClonesArray`` model does not read; uproot reads everything else of these
classes from the streamer records stored in the file. :func:`raw_wcsim_objects` swaps in a member-wise
model for the duration of a read, so no C++ class, no ROOT installation and no flattening macro is needed.

* :func:`read_events` gives, per event (the first trigger of each WCSim event), the digits (``tube``
  1-based, ``charge`` p.e., ``time`` ns with WCSim's trigger offset) and the primary particle (``pid``
  PDG code, ``energy`` total MeV, ``momentum`` MeV, ``dir_*``, ``vtx_*`` cm), as the inputs of the
  ``convert=raw_wcsim`` mapping (``format: objects``).
* :func:`read_geometry` gives the PMTs of the geometry tree (tube number, position cm, facing direction,
  cylinder location); ``detector=from_file detector.path=<raw file>`` reads the geometry the events were
  simulated with from the same file.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import awkward as ak
import numpy as np
import uproot
import uproot.models.TClonesArray
import uproot.models.TObjArray

from recoml.errors import DataError

log = logging.getLogger(__name__)

__all__ = [
    "EVENT_FIELDS",
    "primary_track",
    "raw_wcsim_objects",
    "read_events",
    "read_geometry",
    "read_triggers",
]

#: ROOT streamer basic types (``TStreamerElement.fType``) of the members WCSim's classes hold.
_BASIC = {1: "i1", 2: ">i2", 3: ">i4", 4: ">i8", 5: ">f4", 8: ">f8", 11: "u1", 12: ">u2", 13: ">u4", 18: "?"}
#: ``fType`` of a base class (``TObject``), streamed object by object.
_BASE = 66
#: ``TObject::kIsReferenced``: a referenced object streams its process id after its bits.
_IS_REFERENCED = 1 << 4
#: What :func:`read_events` returns: per-hit (jagged) digits, then per-event truth.
EVENT_FIELDS = (
    "tube",
    "charge",
    "time",
    "pid",
    "energy",
    "momentum",
    "mass",
    "dir_x",
    "dir_y",
    "dir_z",
    "vtx_x",
    "vtx_y",
    "vtx_z",
    "n_triggers",
)


class Model_TClonesArray(uproot.models.TClonesArray.Model_TClonesArray):  # noqa: N801 (uproot's naming)
    """``TClonesArray`` streamed member-wise (ROOT's default for arrays of classes with a streamer record):
    its objects become columns, ``columns[member]`` of shape ``(n,)`` or ``(n, array length)``."""

    columns: dict[str, np.ndarray]

    def read_members(self, chunk: Any, cursor: Any, context: Any, file: Any) -> None:
        self._bases.append(
            uproot.models.TObject.Model_TObject.read(
                chunk, cursor, context, file, self._file, self._parent, concrete=self.concrete
            )
        )
        self._members["fName"] = cursor.string(chunk, context)
        name, _, version = cursor.string(chunk, context).partition(";")
        self._item_classname = name
        self._item_classversion = int(version) if version else "max"
        self._members["fClass"] = file.class_named(name, self._item_classversion)
        n, low = cursor.fields(chunk, uproot.models.TObjArray._tobjarray_format1, context)
        self._members["fSize"], self._members["fLowerBound"] = n, low
        self.columns = {}
        for element in file.streamer_named(name, self._item_classversion).elements:
            kind, member = element.member("fType"), element.member("fName")
            if kind == _BASE:  # TObject: version, unique id, bits (+ process id when referenced)
                for _ in range(n):
                    cursor.skip(2)
                    _, bits = cursor.fields(chunk, uproot.models.TObjArray._tobjarray_format1, context)
                    if bits & _IS_REFERENCED:
                        cursor.skip(2)
                continue
            basic = kind - 20 if 20 < kind < 40 else kind  # 20 + t: a fixed-size array of t
            if basic not in _BASIC:
                raise DataError(
                    f"{file.file_path}: {name}.{member} has ROOT streamer type {kind}, which the "
                    "member-wise TClonesArray reader does not read (numbers and fixed arrays only)"
                )
            width = max(1, int(element.member("fArrayLength")))
            values = cursor.array(chunk, n * width, np.dtype(_BASIC[basic]), context)
            self.columns[member] = values.astype(values.dtype.newbyteorder("="))
            if width > 1:
                self.columns[member] = self.columns[member].reshape(n, width)
        self._data: list[Any] = []  # the objects are the columns above


@contextlib.contextmanager
def raw_wcsim_objects() -> Iterator[None]:
    """Within the block uproot reads ``TClonesArray`` member-wise (only raw WCSim files should be read)."""
    previous = uproot.classes["TClonesArray"]
    uproot.classes["TClonesArray"] = Model_TClonesArray
    try:
        yield
    finally:
        uproot.classes["TClonesArray"] = previous


def _open(path: Path, tree: str) -> Any:
    try:
        file = uproot.open(path, array_cache=None, object_cache=None)
    except Exception as err:  # uproot raises ValueError/OSError for foreign files
        raise DataError(f"{path}: not a ROOT file or unreadable by uproot ({err})") from err
    names = {k.rsplit(";", 1)[0] for k in file.keys(recursive=False)}
    if tree not in names:
        raise DataError(f"{path}: no '{tree}' tree of raw WCSim output; the file holds {sorted(names)}")
    return file


def _branch(file: Any, path: Path, tree: str, candidates: Sequence[str]) -> Any:
    """The first of ``candidates`` (branch paths) the tree has."""
    t = file[tree]
    for name in candidates:
        if name in t.keys(recursive=True):
            return t[name]
    raise DataError(f"{path}: tree '{tree}' has none of the branches {list(candidates)} of raw WCSim output")


def read_triggers(path: str | Path, tree: str = "wcsimT") -> list[Any]:
    """The triggers of every event of a raw WCSim file (uproot's ``WCSimRootTrigger`` objects, with
    member-wise ``columns`` for their arrays); every event checked to have one, whose digits are as many
    as it announces."""
    path = Path(path)
    file = _open(path, tree)
    with raw_wcsim_objects():
        try:
            events = _branch(file, path, tree, ["wcsimrootevent/fEventList"]).array(library="np")
        except Exception as err:  # deserialization of a WCSim version this reader does not know
            raise DataError(
                f"{path}: cannot decode its WCSimRootEvent objects ({type(err).__name__}: {err})"
            ) from err
    for i, triggers in enumerate(events):
        if not len(triggers):
            raise DataError(f"{path}: event {i} of tree '{tree}' has no trigger")
        first = triggers[0]
        n_digits, expected = (
            len(first.member("fCherenkovDigiHits").columns["fTubeId"]),
            int(first.member("fNcherenkovdigihits")),
        )
        if n_digits != expected:
            raise DataError(
                f"{path}: event {i} announces {expected} digits (fNcherenkovdigihits) but holds {n_digits}"
            )
    return list(events)


def primary_track(tracks: dict[str, np.ndarray], path: str | Path, event: int) -> int:
    """Row of the primary particle among a trigger's track columns: WCSim flags the beam -1, the target -2
    and primaries 0; the first primary."""
    primary = np.flatnonzero(tracks["fFlag"] == 0)
    if not len(primary):
        raise DataError(f"{path}: event {event} has no primary track (fFlag == 0) among its tracks")
    return int(primary[0])


def read_events(
    path: str | Path, tree: str = "wcsimT", names: Sequence[str] | None = None
) -> tuple[dict[str, Any], int]:
    """The first trigger of every event of a raw WCSim file as ``({field: values}, n_events)``: the
    :data:`EVENT_FIELDS` (``names`` selects some; per-hit fields are awkward jagged arrays)."""
    path = Path(path)
    unknown = sorted(set(names or ()) - set(EVENT_FIELDS))
    if unknown:
        raise DataError(
            f"{path}: raw WCSim events hold no field(s) {unknown}; they hold {list(EVENT_FIELDS)}"
        )
    events = read_triggers(path, tree)
    rows: dict[str, list[Any]] = {k: [] for k in EVENT_FIELDS}
    for i, triggers in enumerate(events):
        first = triggers[0]
        digits = first.member("fCherenkovDigiHits").columns
        tracks = first.member("fTracks").columns
        k = primary_track(tracks, path, i)
        direction, vertex = tracks["fDir"][k], np.asarray(first.member("fVtx"), dtype=np.float64)
        rows["tube"].append(digits["fTubeId"])
        rows["charge"].append(digits["fQ"])
        rows["time"].append(digits["fT"])
        for field, value in (
            ("pid", int(tracks["fIpnu"][k])),
            ("energy", float(tracks["fE"][k])),
            ("momentum", float(tracks["fP"][k])),
            ("mass", float(tracks["fM"][k])),
            ("dir_x", float(direction[0])),
            ("dir_y", float(direction[1])),
            ("dir_z", float(direction[2])),
            ("vtx_x", float(vertex[0])),
            ("vtx_y", float(vertex[1])),
            ("vtx_z", float(vertex[2])),
            ("n_triggers", len(triggers)),
        ):
            rows[field].append(value)
    out: dict[str, Any] = {}
    for field in names or EVENT_FIELDS:
        values = rows[field]
        out[field] = ak.Array(values) if field in ("tube", "charge", "time") else np.asarray(values)
    log.info("%s: %d raw WCSim events read (first trigger of each)", path, len(events))
    return out, len(events)


def read_geometry(path: str | Path, tree: str = "wcsimGeoT") -> dict[str, np.ndarray]:
    """The PMTs of a raw WCSim geometry tree: ``tube`` (WCSim tube number), ``position`` (cm),
    ``direction`` (unit, facing) and ``cylloc`` (cylinder location), in file order; WCSim's trailing empty
    entries (tube number 0, zero direction) are left out."""
    path = Path(path)
    file = _open(path, tree)
    with raw_wcsim_objects():
        try:
            geometry = _branch(file, path, tree, ["wcsimrootgeom"]).array(library="np")
        except Exception as err:
            raise DataError(
                f"{path}: cannot decode its WCSimRootGeom object ({type(err).__name__}: {err})"
            ) from err
    if len(geometry) != 1:
        raise DataError(f"{path}: tree '{tree}' holds {len(geometry)} geometries; expected one")
    pmts = geometry[0].member("fPMTArray").columns
    keep = (pmts["fTubeNo"] > 0) & (np.abs(pmts["fOrientation"]).sum(axis=1) > 0)
    return {
        "tube": pmts["fTubeNo"][keep].astype(np.int64),
        "position": pmts["fPosition"][keep].astype(np.float64),
        "direction": pmts["fOrientation"][keep].astype(np.float64),
        "cylloc": pmts["fCylLoc"][keep].astype(np.int64),
    }
