"""Checks of the event-store layout: cheap structural ones (run at open and before writing) and full value
checks (``EventStore.validate``). Every failure is a :class:`~recoml.errors.DataError` that names the file
and the problem, so a broken file never surfaces as a bare h5py/numpy traceback.

The layout (docs/design.md, "Event store"): per-event arrays ``(N, ...)``; for each object type ``O`` an
offsets array ``event_O_index`` ``(N,)`` (event ``i`` owns rows ``[index[i], index[i+1])``, the last event
ends at the arrays' length) and flat fields named ``<singular of O>_*`` (``hits`` -> ``hit_*``, ``particles``
-> ``particle_*``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from recoml.errors import DataError

#: Fields whose values are integers by the store format (docs/design.md; the tracking fields of
#: docs/tracking.md): ids, labels, indices. A float or bool array there is refused, never cast (1.7 would
#: become PMT 1 or class 1 without a word).
INTEGER_FIELDS = {
    "hit_pmt": "PMT ids",
    "hit_parent": "particle indices (-1 dark noise)",
    "labels": "particle labels",
    "event_ids": "entry numbers",
    "hit_particle_id": "particle ids",
    "hit_volume_id": "volume ids",
    "hit_layer_id": "layer ids",
    "hit_module_id": "module ids",
}

INDEX_RE = re.compile(r"^event_(?P<type>[A-Za-z0-9]+(?:_[A-Za-z0-9]+)*)_index$")


def index_name(object_type: str) -> str:
    """Name of the offsets array of ``object_type`` (``hits`` -> ``event_hits_index``)."""
    return f"event_{object_type}_index"


def field_prefix(object_type: str) -> str:
    """Prefix of the flat fields of ``object_type``: the singular plus ``_`` (``hits`` -> ``hit_``)."""
    singular = object_type[:-1] if object_type.endswith("s") and len(object_type) > 1 else object_type
    return singular + "_"


@dataclass(frozen=True)
class Layout:
    """What the dataset names and shapes of a store say about its structure."""

    n_events: int
    object_fields: dict[str, list[str]]  # object type -> flat field names (index excluded)
    object_lengths: dict[str, int]  # object type -> number of rows of its flat arrays
    event_fields: list[str]  # per-event arrays (offsets arrays excluded)

    def object_type_of(self, name: str) -> str | None:
        for otype, fields in self.object_fields.items():
            if name in fields:
                return otype
        return None


def analyze_layout(shapes: Mapping[str, tuple[int, ...]], where: str) -> Layout:
    """Classify datasets into offsets, flat object fields and per-event arrays, checking their lengths.

    ``where`` names the file in error messages.
    """
    names = sorted(n for n, s in shapes.items() if len(s) > 0)
    index_of = {m.group("type"): n for n in names if (m := INDEX_RE.match(n))}
    for iname in index_of.values():
        if len(shapes[iname]) != 1:
            raise DataError(f"{where}: offsets array '{iname}' must be 1-D, it has shape {shapes[iname]}")

    n_events: int | None = None
    ref = ""
    for _, iname in sorted(index_of.items()):
        count = shapes[iname][0]
        if n_events is None:
            n_events, ref = count, iname
        elif count != n_events:
            raise DataError(f"{where}: '{iname}' has {count} events but '{ref}' has {n_events}")

    object_fields: dict[str, list[str]] = {}
    object_lengths: dict[str, int] = {}
    claimed = set(index_of.values())
    # Longer prefixes first, so that e.g. "hit_" never steals fields of a type "hitgroups".
    for otype in sorted(index_of, key=lambda t: -len(field_prefix(t))):
        prefix = field_prefix(otype)
        fields = [n for n in names if n.startswith(prefix) and n not in claimed]
        claimed.update(fields)
        lengths = {n: shapes[n][0] for n in fields}
        if len(set(lengths.values())) > 1:
            listed = ", ".join(f"{n} ({v})" for n, v in lengths.items())
            raise DataError(f"{where}: the flat {otype} arrays have different lengths: {listed}")
        object_fields[otype] = fields
        object_lengths[otype] = next(iter(lengths.values()), 0)

    event_fields = [n for n in names if n not in claimed]
    if "hits" not in index_of and any(n.startswith("hit_") for n in event_fields):
        _missing(where, [index_name("hits")], names, why="the flat hit_* arrays need their offsets")
    if n_events is None:
        n_events = shapes[event_fields[0]][0] if event_fields else 0
        ref = event_fields[0] if event_fields else ""
    for n in event_fields:
        if shapes[n][0] != n_events:
            head = n.split("_", 1)[0]
            if "_" in n and index_name(head + "s") not in shapes:
                hint = (
                    f" (if '{n}' is a flat field of object type '{head}s', "
                    f"the offsets array '{index_name(head + 's')}' is missing)"
                )
            else:
                hint = ""
            raise DataError(
                f"{where}: per-event array '{n}' has {shapes[n][0]} rows but the file has {n_events} events "
                f"(length of '{ref}'){hint}"
            )
    return Layout(n_events, object_fields, object_lengths, event_fields)


def _missing(where: str, expected: Iterable[str], found: Iterable[str], why: str = "") -> None:
    found = sorted(found)
    missing = [e for e in expected if e not in found]
    if missing:
        why = f" ({why})" if why else ""
        raise DataError(
            f"{where}: missing dataset(s) {missing}{why}; expected {list(expected)}, found {found}"
        )


def require_fields(where: str, expected: Iterable[str], found: Iterable[str]) -> None:
    """Raise a DataError listing expected and found datasets when some of ``expected`` are absent."""
    _missing(where, list(expected), found)


def check_offsets(index: np.ndarray, n_rows: int, name: str, where: str) -> np.ndarray:
    """Check an offsets array and return the bounds ``(N+1,)`` int64 (``bounds[N] = n_rows``)."""
    if index.ndim != 1 or index.dtype.kind not in "iu":
        raise DataError(f"{where}: '{name}' must be a 1-D integer array, it is {index.dtype} {index.shape}")
    index = np.asarray(index, dtype=np.int64)
    if len(index) and index[0] < 0:
        raise DataError(f"{where}: '{name}' starts at {index[0]}, a negative row")
    step = np.diff(index)
    bad = np.flatnonzero(step < 0)
    if len(bad):
        i = int(bad[0]) + 1
        raise DataError(
            f"{where}: '{name}' decreases at event {i}: it starts at row {index[i]} "
            f"after event {i - 1} started at row {index[i - 1]}"
        )
    if len(index) and index[-1] > n_rows:
        i = int(np.argmax(index > n_rows))
        raise DataError(
            f"{where}: '{name}' runs past the end of the flat arrays: event {i} starts at row {index[i]} "
            f"but they have {n_rows} rows"
        )
    bounds = np.empty(len(index) + 1, dtype=np.int64)
    bounds[:-1] = index
    bounds[-1] = n_rows
    return bounds


def check_integer_fields(dtypes: Mapping[str, np.dtype], where: str) -> None:
    """DataError naming the first of :data:`INTEGER_FIELDS` that is stored with a float or bool dtype."""
    for name, what in INTEGER_FIELDS.items():
        dtype = dtypes.get(name)
        if dtype is not None and dtype.kind not in "iu":
            raise DataError(
                f"{where}: '{name}' must hold integer {what}, it is {dtype}; write it with an integer dtype "
                "(recoml never casts a float or bool array to ids or labels)"
            )


def event_of_row(bounds: np.ndarray, row: int) -> int:
    """The event that owns flat row ``row``."""
    return int(np.searchsorted(bounds, row, side="right") - 1)


def check_values(
    read_block: Callable[[str, int, int], np.ndarray],
    object_fields: Mapping[str, list[str]],
    dtypes: Mapping[str, np.dtype],
    bounds: Mapping[str, np.ndarray],
    where: str,
    n_pmts: int | None = None,
    row_ranges: Mapping[str, list[tuple[int, int]]] | None = None,
    block_rows: int = 1 << 22,
) -> None:
    """Scan flat arrays in blocks (bounded memory): ``hit_pmt`` within ``[0, n_pmts)``; no NaN/inf in floats.

    ``read_block(name, start, stop)`` reads rows of a dataset; ``row_ranges`` restricts the scan per object
    type (default: every row).
    """
    for otype, fields in object_fields.items():
        b = bounds[otype]
        ranges = row_ranges[otype] if row_ranges is not None else [(0, int(b[-1]))]
        for name in fields:
            kind = dtypes[name].kind
            is_pmt = otype == "hits" and name == "hit_pmt" and n_pmts is not None
            if kind != "f" and not is_pmt:
                continue
            n_bad, first_bad = 0, None
            n_out, first_out = 0, None
            for lo, hi in ranges:
                for start in range(lo, hi, block_rows):
                    block = np.asarray(read_block(name, start, min(hi, start + block_rows)))
                    if is_pmt:
                        out = (block < 0) | (block >= n_pmts)
                        count = int(out.sum())
                        if count and first_out is None:
                            j = int(np.argmax(out))
                            first_out = (start + j, block[j])
                        n_out += count
                    if kind == "f":
                        bad = ~np.isfinite(block)
                        count = int(bad.sum())
                        if count and first_bad is None:
                            j = int(np.argmax(bad.reshape(len(block), -1).any(axis=1)))
                            first_bad = start + j
                        n_bad += count
            if first_out is not None:
                row, value = first_out
                raise DataError(
                    f"{where}: hit_pmt value {value} at event {event_of_row(b, row)} (hit row {row}) is "
                    f"outside [0, {n_pmts}) for a detector with n_pmts={n_pmts}; "
                    f"{n_out} hit(s) in all are out of range"
                )
            if first_bad is not None:
                raise DataError(
                    f"{where}: '{name}' has {n_bad} NaN/inf values, the first in event "
                    f"{event_of_row(b, first_bad)} (row {first_bad})"
                )
