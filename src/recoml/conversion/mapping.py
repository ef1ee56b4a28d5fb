"""Mapping configs (``recoml/conf/convert/*.yaml``): which tree, which branches become which store fields.

A mapping is checked completely before any file is opened, so a typo in a key or an expression fails in
a second with the field's name, not after an hour of conversion. See ``docs/converting.md`` for the
format; :class:`RootMapping` is the parsed form of a ROOT mapping, :class:`TrackmlMapping` of TrackML's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping as MappingABC
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from recoml.conversion.expressions import Expression
from recoml.data.identity import check_conventions
from recoml.data.validate import INDEX_RE, field_prefix
from recoml.errors import ConfigError, DataError

__all__ = [
    "CONVENTIONS",
    "FieldSpec",
    "PmtMatch",
    "RootMapping",
    "SensorLookupSpec",
    "TrackmlMapping",
    "parse_mapping",
]

#: Store fields with a fixed dtype and per-row shape (docs/design.md, "Event store"); others keep their
#: integer/bool dtype and become float32 when floating.
CONVENTIONS: dict[str, tuple[str, tuple[int, ...]]] = {
    "hit_pmt": ("int32", ()),
    "hit_charge": ("float32", ()),
    "hit_time": ("float32", ()),
    "labels": ("int32", ()),
    "energies": ("float32", (1,)),
    "positions": ("float32", (1, 3)),
    "angles": ("float32", (2,)),
    "event_ids": ("int32", ()),
}
LAYOUTS = ("jagged", "long")
_ROOT_KEYS = {
    "name", "format", "description", "tree", "layout", "event_column", "aliases", "objects", "events",
    "pmt_match", "sensor_lookup", "time_origin", "energy_kind", "reader",
}  # fmt: skip
_TRACKML_KEYS = {"name", "format", "description", "detectors", "cells", "events", "converter"}
_FIELD_KEYS = {"expr", "dtype", "shape", "scale"}
_PMT_KEYS = {"object", "field", "position", "tolerance"}
_LOOKUP_KEYS = {"object", "field", "keys"}


@dataclass(frozen=True)
class FieldSpec:
    """One store field: its expression, and the dtype, per-row shape and scale factor to apply."""

    name: str
    expr: Expression
    dtype: np.dtype | None = None
    shape: tuple[int, ...] | None = None
    scale: float | None = None

    def finalize(self, values: np.ndarray, n_rows: int, where: str) -> np.ndarray:
        """Scale, reshape to ``(n_rows, *shape)`` and cast (docs/design.md dtypes for conventional names)."""
        arr = np.asarray(values)
        if arr.ndim == 0:  # a constant expression: one value per row
            arr = np.full(n_rows, arr)
        if self.scale is not None:
            arr = arr * self.scale
        if self.shape is not None:
            if arr.size != n_rows * int(np.prod(self.shape, dtype=np.int64)):
                raise ConfigError(
                    f"{where}: field '{self.name}' = '{self.expr.text}' gives rows of shape {arr.shape[1:]}, "
                    f"which cannot be reshaped to {self.shape}"
                )
            arr = arr.reshape(n_rows, *self.shape)
        if self.dtype is not None:
            arr = arr.astype(self.dtype, copy=False)
        elif arr.dtype.kind == "f":
            arr = arr.astype(np.float32, copy=False)
        return arr


@dataclass(frozen=True)
class PmtMatch:
    """Hits given as positions: match them to the nearest PMT of the chosen detector (KD-tree)."""

    object_type: str
    field: str
    position: tuple[Expression, Expression, Expression]
    tolerance: float | None  # cm; None: twice the detector's PMT radius


@dataclass(frozen=True)
class SensorLookupSpec:
    """Hits given by identifiers: look them up in the detector's identifier table (``keys`` maps each
    of the detector's ``sensor_id_names`` used to the expression giving it per hit)."""

    object_type: str
    field: str
    keys: dict[str, Expression]


@dataclass(frozen=True)
class RootMapping:
    """A parsed ROOT mapping (``format: root``)."""

    name: str
    tree: str
    layout: str
    event_column: str | None
    aliases: dict[str, str]
    objects: dict[str, list[FieldSpec]]
    events: list[FieldSpec]
    pmt_match: PmtMatch | None
    raw: dict[str, Any] = field(repr=False)
    sensor_lookup: SensorLookupSpec | None = None
    format: str = "root"  # root | hdf5 (a flat hit table, read like a long tree) | objects (see reader)
    time_origin: str | None = None  # vertex | trigger: what hit times are measured from
    energy_kind: str | None = None  # kinetic | total | momentum: what `energies` holds
    #: ``format: objects``: import path of a family's reader ``(path, tree, names) -> ({name: values},
    #: n_events)`` for files of class objects no branch can read (raw WCSim); jagged layout.
    reader: str | None = None

    @property
    def expressions(self) -> list[Expression]:
        exprs = [f.expr for fields in self.objects.values() for f in fields] + [f.expr for f in self.events]
        if self.pmt_match is not None:
            exprs.extend(self.pmt_match.position)
        if self.sensor_lookup is not None:
            exprs.extend(self.sensor_lookup.keys.values())
        return exprs

    def branch_of(self, name: str) -> str:
        """The branch an expression variable stands for (an alias, or the branch of that name)."""
        return self.aliases.get(name, name)

    @property
    def branches(self) -> list[str]:
        """Every branch the conversion reads, in a stable order."""
        names = {self.branch_of(n) for e in self.expressions for n in e.names}
        if self.event_column is not None:
            names.add(self.event_column)
        return sorted(names)


@dataclass(frozen=True)
class TrackmlMapping:
    """A TrackML mapping (``format: trackml``): which extras to read and where detectors.csv lies."""

    name: str
    detectors: str | bool | None  # path, None: look beside the events, False: do not read
    cells: bool
    events: list[str] | None  # event names to convert; None: all
    raw: dict[str, Any] = field(repr=False)
    #: The converter's import path (the tracking family's).
    converter: str = "recoml.families.tracking.conversion.convert_trackml"


def _plain(obj: Any) -> Any:
    """OmegaConf containers -> plain dicts/lists (resolved), anything else unchanged."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(obj, DictConfig | ListConfig):
            return OmegaConf.to_container(obj, resolve=True)
    except ImportError:  # pragma: no cover - omegaconf is a dependency
        pass
    return obj


def _check_keys(where: str, got: MappingABC, allowed: set[str]) -> None:
    unknown = sorted(set(got) - allowed)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed keys are {sorted(allowed)}")


def _field_spec(name: str, spec: Any, where: str) -> FieldSpec:
    where = f"{where} field '{name}'"
    conv_dtype, conv_shape = CONVENTIONS.get(name, (None, None))
    if isinstance(spec, MappingABC):
        _check_keys(where, spec, _FIELD_KEYS)
        if "expr" not in spec:
            raise ConfigError(f"{where}: needs an 'expr' (the expression giving its values)")
        text, dtype, shape, scale = spec["expr"], spec.get("dtype"), spec.get("shape"), spec.get("scale")
    else:
        text, dtype, shape, scale = spec, None, None, None
    if text is None or (isinstance(text, str) and not text.strip()):
        raise ConfigError(f"{where}: the expression is empty")
    try:
        np_dtype = np.dtype(dtype or conv_dtype) if (dtype or conv_dtype) else None
    except TypeError as exc:
        raise ConfigError(f"{where}: dtype '{dtype}' is not a numpy dtype") from exc
    shape = conv_shape if shape is None else tuple(int(s) for s in shape)
    return FieldSpec(
        name, Expression.parse(text, where), np_dtype, shape, None if scale is None else float(scale)
    )


def _parse_root(raw: dict[str, Any], where: str) -> RootMapping:
    _check_keys(where, raw, _ROOT_KEYS)
    tree = raw.get("tree")
    if not tree:
        raise ConfigError(f"{where}: 'tree' (the name of the TTree to read) is required")
    layout = raw.get("layout", "jagged")
    if layout not in LAYOUTS:
        raise ConfigError(f"{where}: layout '{layout}' is not one of {list(LAYOUTS)}")
    event_column = raw.get("event_column")
    if layout == "long" and not event_column:
        raise ConfigError(
            f"{where}: layout 'long' needs 'event_column' (the branch holding the event number)"
        )
    aliases = {str(k): str(v) for k, v in (raw.get("aliases") or {}).items()}
    for alias in aliases:
        if not alias.isidentifier():
            raise ConfigError(f"{where}: alias '{alias}' is not a valid identifier")

    objects: dict[str, list[FieldSpec]] = {}
    for otype, fields in (raw.get("objects") or {}).items():
        if not isinstance(fields, MappingABC) or not fields:
            raise ConfigError(f"{where}: objects.{otype} must map store fields to expressions")
        prefix = field_prefix(otype)
        specs = []
        for name, spec in fields.items():
            if not name.startswith(prefix):
                raise ConfigError(
                    f"{where}: field '{name}' of object type '{otype}' must start with '{prefix}' "
                    "(the store tells object types apart by prefix)"
                )
            specs.append(_field_spec(name, spec, f"{where} objects.{otype}"))
        objects[str(otype)] = specs
    prefixes = {field_prefix(t): t for t in objects}
    events = []
    for name, spec in (raw.get("events") or {}).items():
        owner = next((t for p, t in prefixes.items() if name.startswith(p)), None)
        if owner is not None or INDEX_RE.match(name):
            raise ConfigError(
                f"{where}: per-event field '{name}' would be read as a field of object type "
                f"'{owner or name}'; choose another name"
            )
        events.append(_field_spec(name, spec, f"{where} events"))
    if not objects and not events:
        raise ConfigError(f"{where}: maps no fields; give 'objects' and/or 'events'")

    pmt_match = None
    if raw.get("pmt_match"):
        pm = raw["pmt_match"]
        _check_keys(f"{where} pmt_match", pm, _PMT_KEYS)
        otype = pm.get("object", "hits")
        pos = pm.get("position")
        if otype not in objects:
            raise ConfigError(
                f"{where}: pmt_match.object '{otype}' is not one of the mapped objects {list(objects)}"
            )
        if not isinstance(pos, list | tuple) or len(pos) != 3:
            raise ConfigError(f"{where}: pmt_match.position must list three expressions (x, y, z in cm)")
        tol = pm.get("tolerance")
        pmt_match = PmtMatch(
            otype,
            pm.get("field", "hit_pmt"),
            tuple(Expression.parse(p, f"{where} pmt_match.position") for p in pos),  # type: ignore[arg-type]
            None if tol is None else float(tol),
        )
    fmt = str(raw.get("format", "root"))
    reader = raw.get("reader")
    if (fmt == "objects") != bool(reader):
        raise ConfigError(
            f"{where}: 'reader' (the import path of a family's object reader) goes with format 'objects', "
            f"and format 'objects' needs one; got format '{fmt}' and reader {reader!r}"
        )
    if fmt == "objects" and layout != "jagged":
        raise ConfigError(f"{where}: format 'objects' gives one entry per event: layout must be 'jagged'")
    return RootMapping(
        str(raw.get("name", "mapping")),
        str(tree),
        layout,
        event_column,
        aliases,
        objects,
        events,
        pmt_match,
        raw,
        _sensor_lookup(raw, objects, where),
        fmt,
        *_conventions(raw, where),
        None if reader is None else str(reader),
    )


def _sensor_lookup(
    raw: dict[str, Any], objects: dict[str, list[FieldSpec]], where: str
) -> SensorLookupSpec | None:
    spec = raw.get("sensor_lookup")
    if not spec:
        return None
    _check_keys(f"{where} sensor_lookup", spec, _LOOKUP_KEYS)
    otype = spec.get("object", "hits")
    if otype not in objects:
        raise ConfigError(
            f"{where}: sensor_lookup.object '{otype}' is not one of the mapped objects {list(objects)}"
        )
    keys = spec.get("keys")
    if not isinstance(keys, MappingABC) or not keys:
        raise ConfigError(
            f"{where}: sensor_lookup.keys must map the detector's identifier names to expressions, "
            "e.g. {tube: tube} or {dom_id: dom_id, channel_id: channel_id}"
        )
    if raw.get("pmt_match"):
        raise ConfigError(
            f"{where}: give pmt_match (hit positions) or sensor_lookup (hit identifiers), not both"
        )
    parsed = {str(k): Expression.parse(str(v), f"{where} sensor_lookup.keys.{k}") for k, v in keys.items()}
    return SensorLookupSpec(otype, str(spec.get("field", "hit_pmt")), parsed)


def _conventions(raw: dict[str, Any], where: str) -> tuple[str | None, str | None]:
    """The mapping's declared ``time_origin`` and ``energy_kind`` (checked; ``None`` when not declared)."""
    time_origin, energy_kind = raw.get("time_origin"), raw.get("energy_kind")
    try:
        check_conventions(time_origin, energy_kind, where)
    except DataError as err:
        raise ConfigError(str(err)) from err
    return time_origin, energy_kind


def _parse_trackml(raw: dict[str, Any], where: str) -> TrackmlMapping:
    _check_keys(where, raw, _TRACKML_KEYS)
    events = raw.get("events")
    return TrackmlMapping(
        str(raw.get("name", "trackml")),
        raw.get("detectors"),
        bool(raw.get("cells", True)),
        None if events is None else [str(e) for e in events],
        raw,
        str(raw.get("converter", TrackmlMapping.converter)),
    )


def parse_mapping(cfg: Any, where: str = "convert") -> RootMapping | TrackmlMapping:
    """Check a mapping (``cfg.convert``: a dict or DictConfig) and return its parsed form."""
    raw = _plain(cfg)
    if not isinstance(raw, MappingABC):
        raise ConfigError(f"{where}: the mapping must be a dictionary, got {type(raw).__name__}")
    raw = dict(raw)
    name = str(raw.get("name", "mapping"))
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.+-]*", name) or ".." in name:
        raise ConfigError(
            f"{where}: mapping name {name!r} must be a plain file name (letters, digits, '_', '-', '.', "
            "no '..'): it names the output file in the data directory"
        )
    where = f"{where} mapping '{name}'"
    fmt = raw.get("format", "root")
    if fmt in ("root", "hdf5", "objects"):  # hit tables and object files are mapped like ROOT trees
        return _parse_root(raw, where)
    if fmt == "trackml":
        return _parse_trackml(raw, where)
    raise ConfigError(f"{where}: format '{fmt}' is not one of ['root', 'hdf5', 'objects', 'trackml']")
