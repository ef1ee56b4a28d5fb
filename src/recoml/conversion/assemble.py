"""Turn the branch arrays of one chunk of entries into one chunk of the event store.

Evaluates the mapping's expressions, checks that per-hit fields agree on each event's hit count, applies
the NaN policy, matches hit positions to PMTs and adds the offsets arrays and the provenance fields
``event_ids`` (entry in the source file, or the event number of a long tree) and ``root_files``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import awkward as ak
import numpy as np

from recoml.conversion.long_tree import group_rows
from recoml.conversion.mapping import FieldSpec, RootMapping
from recoml.conversion.pmt_match import PmtMatcher
from recoml.conversion.sensor_lookup import SensorLookup
from recoml.data.validate import index_name
from recoml.errors import ConfigError, DataError

__all__ = ["NAN_POLICIES", "ChunkStats", "build_chunk"]

NAN_POLICIES = ("raise", "drop")
_POSITION = "__pmt_match_position__"
_SENSOR_KEY = "__sensor_lookup_key__"


@dataclass
class ChunkStats:
    """What happened to one chunk: events and objects in and out, NaNs dropped (per field)."""

    n_entries: int = 0
    n_events: int = 0
    dropped_events: int = 0
    dropped_objects: dict[str, int] = field(default_factory=dict)
    nan_counts: dict[str, int] = field(default_factory=dict)

    def add(self, other: ChunkStats) -> None:
        """Add another chunk's counts to these (totals over a conversion)."""
        self.n_entries += other.n_entries
        self.n_events += other.n_events
        self.dropped_events += other.dropped_events
        for key, value in other.dropped_objects.items():
            self.dropped_objects[key] = self.dropped_objects.get(key, 0) + value
        for key, value in other.nan_counts.items():
            self.nan_counts[key] = self.nan_counts.get(key, 0) + value


def _is_jagged(value: Any) -> bool:
    """An awkward array with a variable number of values per event (``N * var * ...``)."""
    return isinstance(value, ak.Array) and isinstance(value.type.content, ak.types.ListType)


def _as_numpy(value: Any) -> np.ndarray:
    if isinstance(value, ak.Array):
        return ak.to_numpy(value)
    return np.asarray(value)


class _Env(dict):
    """Expression variables: aliases resolved to their branch's values."""

    def __init__(self, mapping: RootMapping, values: dict[str, Any]) -> None:
        super().__init__()
        for expr in mapping.expressions:
            for name in expr.names:
                self[name] = values[mapping.branch_of(name)]


def _object_fields_jagged(
    specs: list[tuple[str, Any]], env: _Env, where: str, otype: str, first_entry: int
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Flat values and per-event counts of one object type from jagged per-hit expressions."""
    counts: np.ndarray | None = None
    ref = ""
    flat: dict[str, np.ndarray] = {}
    for name, expr in specs:
        value = _evaluate(expr, env, name, where)
        if not _is_jagged(value):
            raise DataError(
                f"{where}: {otype} field '{name}' = '{expr.text}' gives one value per event, not one per "
                f"{otype[:-1] if otype.endswith('s') else otype}; per-object fields need jagged branches"
            )
        n = np.asarray(ak.num(value, axis=1), dtype=np.int64)
        if counts is None:
            counts, ref = n, name
        elif not np.array_equal(n, counts):
            i = int(np.flatnonzero(n != counts)[0])
            raise DataError(
                f"{where}: in entry {first_entry + i} the per-{otype[:-1]} fields '{ref}' and '{name}' have "
                f"different lengths ({counts[i]} vs {n[i]}); every {otype} field needs one value per object"
            )
        flat[name] = ak.to_numpy(ak.flatten(value, axis=1))
    assert counts is not None
    return flat, counts


def _evaluate(expr: Any, env: _Env, name: str, where: str) -> Any:
    """Evaluate one field's expression; numpy/awkward failures become a DataError naming the field."""
    try:
        with np.errstate(divide="ignore", invalid="ignore"):
            return expr.evaluate(env)
    except (ValueError, TypeError, IndexError, ArithmeticError) as exc:
        raise DataError(f"{where}: field '{name}' = '{expr.text}' cannot be evaluated ({exc})") from exc


def _event_values(spec_expr: Any, env: _Env, n: int, name: str, where: str) -> np.ndarray:
    value = _evaluate(spec_expr, env, name, where)
    if _is_jagged(value):
        raise DataError(
            f"{where}: per-event field '{name}' = '{spec_expr.text}' gives a variable number of values per "
            "event; map it under objects, or reduce it (e.g. index it: 'x[:, 0]')"
        )
    arr = _as_numpy(value)
    if arr.ndim == 0:
        arr = np.full(n, arr)
    if len(arr) != n:
        raise DataError(f"{where}: per-event field '{name}' has {len(arr)} values for {n} events")
    return arr


def _nan_rows(arrays: dict[str, np.ndarray], n: int) -> tuple[np.ndarray, dict[str, int]]:
    bad = np.zeros(n, dtype=bool)
    counts: dict[str, int] = {}
    for name, arr in arrays.items():
        if arr.dtype.kind == "f":
            isnan = ~np.isfinite(arr)  # NaN and +-inf
            if isnan.any():
                counts[name] = int(isnan.sum())
                bad |= isnan.reshape(n, -1).any(axis=1)
    return bad, counts


def _apply_nan_policy(
    objects: dict[str, dict[str, np.ndarray]],
    counts: dict[str, np.ndarray],
    events: dict[str, np.ndarray],
    n_events: int,
    policy: str,
    where: str,
    first_entry: np.ndarray,
    stats: ChunkStats,
) -> int:
    """Refuse or drop NaN values; return the number of events kept (arrays are edited in place)."""
    bad_events, nan_counts = _nan_rows(events, n_events)
    bad_objects = {}
    for otype, fields in objects.items():
        bad, c = _nan_rows(fields, int(counts[otype].sum()))
        bad_objects[otype] = bad
        nan_counts.update(c)
    if not nan_counts:
        return n_events
    stats.nan_counts = {k: stats.nan_counts.get(k, 0) + v for k, v in nan_counts.items()}
    if policy == "raise":
        name, count = next(iter(nan_counts.items()))
        owner = next((t for t, f in objects.items() if name in f), None)
        if owner is None:
            event = int(np.flatnonzero(~np.isfinite(events[name]).reshape(n_events, -1).any(axis=1))[0])
        else:
            row = int(
                np.flatnonzero(
                    ~np.isfinite(objects[owner][name]).reshape(len(objects[owner][name]), -1).any(1)
                )[0]
            )
            event = int(np.searchsorted(np.cumsum(counts[owner]), row, side="right"))
        listed = ", ".join(f"'{k}' ({v})" for k, v in nan_counts.items())
        raise DataError(
            f"{where}: {sum(nan_counts.values())} NaN/inf value(s) in {listed}, the first in entry "
            f"{int(first_entry[event])}; fix the input or set nan_policy=drop to drop the hits and events "
            "that hold them"
        )
    keep_events = ~bad_events
    for otype, fields in objects.items():
        event_of_row = np.repeat(np.arange(n_events), counts[otype])
        keep = ~bad_objects[otype] & keep_events[event_of_row]
        stats.dropped_objects[otype] = stats.dropped_objects.get(otype, 0) + int((~keep).sum())
        for name in fields:
            fields[name] = fields[name][keep]
        counts[otype] = np.bincount(event_of_row[keep], minlength=n_events)[keep_events]
    for name in events:
        events[name] = events[name][keep_events]
    stats.dropped_events += int(bad_events.sum())
    return int(keep_events.sum())


def build_chunk(
    mapping: RootMapping,
    values: dict[str, Any],
    n_entries: int,
    first_entry: int,
    source: str,
    nan_policy: str = "raise",
    matcher: PmtMatcher | None = None,
    lookup: SensorLookup | None = None,
) -> tuple[dict[str, np.ndarray], ChunkStats]:
    """One store chunk (its own offsets from 0) from the branch ``values`` of entries ``first_entry + i``."""
    if nan_policy not in NAN_POLICIES:
        raise ConfigError(f"nan_policy '{nan_policy}' is not one of {list(NAN_POLICIES)}")
    where = f"{source} (tree '{mapping.tree}', entries {first_entry}-{first_entry + n_entries - 1})"
    env = _Env(mapping, values)
    stats = ChunkStats(n_entries=n_entries)
    specs = {t: [(f.name, f.expr) for f in fields] for t, fields in mapping.objects.items()}
    if mapping.pmt_match is not None:
        pm = mapping.pmt_match
        specs[pm.object_type] += [(f"{_POSITION}{i}", e) for i, e in enumerate(pm.position)]
    if mapping.sensor_lookup is not None:
        sl = mapping.sensor_lookup
        specs[sl.object_type] += [(f"{_SENSOR_KEY}{name}", e) for name, e in sl.keys.items()]

    objects: dict[str, dict[str, np.ndarray]] = {}
    counts: dict[str, np.ndarray] = {}
    events: dict[str, np.ndarray] = {}
    if mapping.layout == "jagged":
        n_events = n_entries
        for otype, s in specs.items():
            objects[otype], counts[otype] = _object_fields_jagged(s, env, where, otype, first_entry)
        entry_of_event = first_entry + np.arange(n_events, dtype=np.int64)
        events["event_ids"] = entry_of_event
        for spec in mapping.events:
            events[spec.name] = _event_values(spec.expr, env, n_events, spec.name, where)
    else:
        assert mapping.event_column is not None
        numbers = np.asarray(values[mapping.event_column]).reshape(-1)
        starts, run_counts = group_rows(numbers, where)
        n_events = len(starts)
        for otype, s in specs.items():
            objects[otype] = {name: _row_values(expr, env, n_entries, name, where) for name, expr in s}
            counts[otype] = run_counts.copy()
        entry_of_event = first_entry + starts
        events["event_ids"] = numbers[starts]
        for spec in mapping.events:
            events[spec.name] = _row_values(spec.expr, env, n_entries, spec.name, where)[starts]
    events["root_files"] = np.full(n_events, source, dtype=object)

    for otype, fields in mapping.objects.items():
        for spec in fields:
            objects[otype][spec.name] = _finalize(spec, objects[otype][spec.name], where)
    for spec in mapping.events:
        events[spec.name] = _finalize(spec, events[spec.name], where)
    if "event_ids" not in {s.name for s in mapping.events}:
        events["event_ids"] = events["event_ids"].astype(np.int32)

    n_kept = _apply_nan_policy(objects, counts, events, n_events, nan_policy, where, entry_of_event, stats)
    if mapping.pmt_match is not None:
        pm = mapping.pmt_match
        if matcher is None:
            raise ConfigError(f"mapping '{mapping.name}' matches hit positions to PMTs; choose a detector")
        matched = objects[pm.object_type]
        xyz = np.stack([matched.pop(f"{_POSITION}{i}") for i in range(3)], axis=1)
        event_of_hit = np.repeat(events["event_ids"], counts[pm.object_type])
        matched[pm.field] = matcher.match(xyz, where, event_of_hit)
    if mapping.sensor_lookup is not None:
        sl = mapping.sensor_lookup
        if lookup is None:
            raise ConfigError(f"mapping '{mapping.name}' looks hit identifiers up in a detector; choose one")
        looked_up = objects[sl.object_type]
        keys = {name: looked_up.pop(f"{_SENSOR_KEY}{name}") for name in sl.keys}
        looked_up[sl.field] = lookup.lookup(keys, where)

    chunk: dict[str, np.ndarray] = dict(events)
    for otype, columns in objects.items():
        offsets = np.zeros(n_kept, dtype=np.int64)
        np.cumsum(counts[otype][:-1], out=offsets[1:])
        chunk[index_name(otype)] = offsets
        chunk.update(columns)
    stats.n_events = n_kept
    return chunk, stats


def _row_values(expr: Any, env: _Env, n_rows: int, name: str, where: str) -> np.ndarray:
    value = _evaluate(expr, env, name, where)
    if _is_jagged(value):
        raise DataError(
            f"{where}: field '{name}' = '{expr.text}' is jagged, but a long tree needs one value per row"
        )
    arr = _as_numpy(value)
    return np.full(n_rows, arr) if arr.ndim == 0 else arr


def _finalize(spec: FieldSpec, values: np.ndarray, where: str) -> np.ndarray:
    return spec.finalize(values, len(values), where)
