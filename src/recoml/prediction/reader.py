"""Read a predictions file back: its sections (one per task) with their fields, checked on the way.

Every problem is a :class:`~recoml.errors.DataError` naming the file: missing file, not HDF5, not a
predictions file (no ``sections`` attribute), no events, or a field an evaluation needs that is absent.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from recoml.data.store import decode_attr
from recoml.data.validate import field_prefix
from recoml.errors import DataError
from recoml.prediction.schema import AUX, FILE_NAME, HIT, PRED, TRUE


@dataclass
class SectionData:
    """One task's predictions from one file, field prefixes removed (``pred_energy``, ``true_energy``,
    ``aux_dwall``, ``event_index``; per hit ``hit_pred_hit_probability`` ... with ``offsets``).

    ``label`` names the run in comparisons; ``info`` holds the task's ``class_names``, ``pairs``,
    ``threshold`` when it has them. ``objects`` holds every other object type of the file by its stored
    field names (``{"edges": {"edge_score": ...}, "particles": {...}, "hits": {"hit_x": ...}}``) with
    ``object_offsets`` ``(N + 1,)`` per type (edge predictions, see
    :mod:`recoml.families.tracking.predictions`).
    """

    label: str
    path: Path
    name: str
    kind: str
    info: dict[str, Any]
    events: dict[str, np.ndarray]
    hits: dict[str, np.ndarray] = field(default_factory=dict)
    offsets: np.ndarray | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    objects: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    object_offsets: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def n_events(self) -> int:
        return len(self.events["event_index"]) if "event_index" in self.events else 0

    def _object_field(self, name: str) -> np.ndarray | None:
        for fields in self.objects.values():
            if name in fields:
                return fields[name]
        return None

    def has(self, name: str) -> bool:
        return name in self.events or name in self.hits or self._object_field(name) is not None

    def get(self, name: str) -> np.ndarray:
        """A field by its un-prefixed name; DataError naming the file and the stored name if absent."""
        if name in self.events:
            return self.events[name]
        if name in self.hits:
            return self.hits[name]
        value = self._object_field(name)
        if value is not None:
            return value
        present = (
            sorted(self.events) + sorted(self.hits) + sorted(f for o in self.objects.values() for f in o)
        )
        raise DataError(
            f"{self.path}: field '{self.stored_name(name)}' is missing; the {self.kind} evaluation of task "
            f"'{self.name}' needs it (fields present: {present})"
        )

    def offsets_of(self, object_type: str) -> np.ndarray:
        """``(N + 1,)`` row offsets of an object type; DataError naming ``event_<type>_index`` if absent."""
        if object_type not in self.object_offsets:
            raise DataError(
                f"{self.path}: dataset 'event_{object_type}_index' is missing; the {self.kind} evaluation of "
                f"task '{self.name}' needs per-event {object_type} (object types present: "
                f"{sorted(self.object_offsets)})"
            )
        return self.object_offsets[object_type]

    def stored_name(self, name: str) -> str:
        """The dataset name in the file (with the section prefix) of an un-prefixed field name."""
        prefix = self.info.get("prefix", "")
        for kind in (PRED, TRUE, HIT + PRED, HIT + TRUE):
            if name.startswith(kind):
                return f"{kind}{prefix}{name[len(kind) :]}"
        return name


def predictions_file(path: str | os.PathLike) -> Path:
    """``path`` itself, or the predictions file of a run directory (``<dir>/predictions.h5``); a training
    run without one, or a directory holding several, is refused in one sentence saying what to give."""
    path = Path(path)
    if not path.is_dir():
        return path
    if (path / FILE_NAME).is_file():
        return path / FILE_NAME
    found = sorted(path.glob(f"**/{FILE_NAME}"))
    if len(found) == 1:
        return found[0]
    if found:
        listed = ", ".join(str(p.parent.relative_to(path)) for p in found[:5]) + (", ..." * (len(found) > 5))
        raise DataError(
            f"predictions: {path} holds {len(found)} predictions files ({listed}); "
            "give one of them, or several as predictions=[a,b]"
        )
    if (path / "checkpoints").is_dir():
        raise DataError(
            f"predictions: {path} is a training run without {FILE_NAME}; make it first with "
            f"`recoml predict ckpt_path={path}`"
        )
    raise DataError(f"predictions: {path} is a directory without {FILE_NAME}")


class Predictions:
    """An opened predictions file: ``attrs`` (decoded), ``sections``, ``n_events``; :meth:`section` reads
    one task's fields."""

    def __init__(self, path: str | os.PathLike, label: str | None = None) -> None:
        self.path = Path(path)
        self.label = label or self.path.parent.name or self.path.stem
        if not self.path.is_file():
            raise DataError(f"predictions: {self.path} does not exist")
        if not h5py.is_hdf5(self.path):
            raise DataError(f"{self.path}: not an HDF5 file; expected a predictions file from recoml.predict")
        with h5py.File(self.path, "r") as f:
            self.attrs = {k: decode_attr(v) for k, v in f.attrs.items()}
            self.shapes = {k: f[k].shape for k in f if isinstance(f[k], h5py.Dataset)}
        sections = self.attrs.get("sections")
        if not isinstance(sections, list) or not sections:
            raise DataError(
                f"{self.path}: attribute 'sections' is missing; this is not a predictions file written by "
                "recoml.predict"
            )
        self.sections: list[dict[str, Any]] = sections
        if "event_index" not in self.shapes:
            raise DataError(f"{self.path}: dataset 'event_index' is missing; expected one row per event")
        self.n_events = int(self.shapes["event_index"][0])
        if self.n_events == 0:
            raise DataError(f"{self.path}: the predictions file holds no events; nothing to evaluate")

    @property
    def kinds(self) -> list[str]:
        return [s["kind"] for s in self.sections]

    def describe(self) -> str:
        kinds = ", ".join(f"{s['name']} ({s['kind']})" for s in self.sections)
        return f"{self.path} holds predictions of task '{self.attrs.get('task')}': {kinds}"

    def section(self, info: dict[str, Any]) -> SectionData:
        """Read one section's per-event and per-hit fields (prefix removed) plus the aux truth."""
        with h5py.File(self.path, "r") as f:
            arrays = {name: ds[()] for name, ds in f.items() if isinstance(ds, h5py.Dataset)}
        return section_from_arrays(arrays, info, self.label, self.path, self.attrs)


def section_from_arrays(
    arrays: dict[str, np.ndarray],
    info: dict[str, Any],
    label: str,
    path: Path | str = "<memory>",
    attrs: dict[str, Any] | None = None,
) -> SectionData:
    """One section of predictions held as ``{stored name: array}`` (a file's datasets, or arrays made in
    memory, e.g. by the int8 check of an export)."""
    prefix = info.get("prefix", "")
    events: dict[str, np.ndarray] = {}
    hits: dict[str, np.ndarray] = {}
    for name, value in arrays.items():
        for kind in (PRED, TRUE):
            rest = name[len(kind + prefix) :]
            if name.startswith(kind + prefix) and "." not in rest:
                events[kind + rest] = value
            if name.startswith(HIT + kind + prefix):
                hits[HIT + kind + name[len(HIT + kind + prefix) :]] = value
        if name.startswith(AUX) or name == "event_index":
            events[name] = value
    offsets = None
    if "event_hits_index" in arrays and hits:
        n_hits = len(next(iter(hits.values())))
        offsets = np.append(np.asarray(arrays["event_hits_index"], dtype=np.int64), n_hits)
    objects, object_offsets = _object_types(arrays)
    return SectionData(
        label=label,
        path=Path(path),
        name=info["name"],
        kind=info["kind"],
        info=dict(info),
        events=events,
        hits=hits,
        offsets=offsets,
        attrs=dict(attrs or {}),
        objects=objects,
        object_offsets=object_offsets,
    )


def _object_types(
    arrays: dict[str, np.ndarray],
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """Every object type ``O`` with an ``event_O_index``: its plain fields (not the per-task ``hit_pred_*``
    / ``hit_true_*``) and its offsets ``(N + 1,)``."""

    objects: dict[str, dict[str, np.ndarray]] = {}
    offsets: dict[str, np.ndarray] = {}
    for name, index in arrays.items():
        if not (name.startswith("event_") and name.endswith("_index")) or name == "event_index":
            continue
        otype = name[len("event_") : -len("_index")]
        prefix = field_prefix(otype)
        fields = {
            k: v
            for k, v in arrays.items()
            if k.startswith(prefix) and not k.startswith((prefix + PRED, prefix + TRUE))
        }
        if not fields:
            continue
        objects[otype] = fields
        offsets[otype] = np.append(np.asarray(index, dtype=np.int64), len(next(iter(fields.values()))))
    return objects, offsets
