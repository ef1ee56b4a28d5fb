"""The event store: one file layout for every detector (docs/design.md, "Event store"), in HDF5 or ``.pt``.

Per-event arrays ``(N, ...)``; per object type ``O`` (``hits``, ``particles``, ...) an offsets array
``event_O_index`` ``(N,)`` int64 and flat fields ``<singular>_*`` (``hit_pmt``, ``particle_pt``). Files
written by WatChMaL's DataTools are read as they are; files written here are readable by WatChMaL
(contiguous datasets, the same names).

* :func:`write_store` / :class:`StoreWriter` write under a temporary name and rename when complete, so a
  crash never leaves a half-written file under the real name.
* :func:`open_store` returns an :class:`EventStore` whose :meth:`~EventStore.read` gathers a whole batch
  of events with one vectorized fancy index on memory-mapped arrays. It holds only metadata and reopens
  its file handles lazily in every process (after a DataLoader fork, or after unpickling).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from recoml.data.integrity import CHECKSUM_ATTR, ContentHash, cached, content_sha256, remember
from recoml.data.store_hdf5 import (
    HDF5_SUFFIXES,
    ChunkStaging,
    Hdf5Reader,
    inspect_hdf5,
    open_h5,
    write_hdf5,
)
from recoml.data.store_pt import ATTRS_KEY, is_pt_file, load_pt, write_pt
from recoml.data.validate import (
    Layout,
    analyze_layout,
    check_integer_fields,
    check_offsets,
    check_values,
    field_prefix,
    index_name,
    require_fields,
)
from recoml.errors import DataError
from recoml.io.atomic import atomic_output, remove_path, reserve, write_error
from recoml.io.provenance import record

__all__ = [
    "EventStore",
    "StoreWriter",
    "field_prefix",
    "index_name",
    "open_store",
    "write_store",
]

log = logging.getLogger(__name__)

_MAX_SLICE_RUNS = 16  # batches made of at most this many runs of consecutive rows are read by slicing
_INHERITED_READERS: list[Any] = []  # readers a forked child inherited (see EventStore._handle)


# --------------------------------------------------------------------------------------------- writing


def is_hdf5_path(path: str | os.PathLike) -> bool:
    """Whether a path names an HDF5 store (by suffix); anything else is written as ``.pt``."""
    return Path(path).suffix.lower() in HDF5_SUFFIXES


def _check_output(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise DataError(f"{path} already exists; set overwrite=true (overwrite=True) to replace it")
    if path.is_dir():
        raise DataError(f"{path} is a directory, expected a file name for the event store")
    path.parent.mkdir(parents=True, exist_ok=True)


def _as_array(name: str, value: Any, where: str) -> np.ndarray:
    if hasattr(value, "detach"):  # torch tensor
        value = value.detach().cpu().numpy()
    if isinstance(value, list | tuple) and value and isinstance(value[0], str | bytes):
        arr = np.empty(len(value), dtype=object)
        arr[:] = list(value)
    else:
        arr = np.asarray(value)
    if arr.ndim == 0:
        raise DataError(f"{where}: field '{name}' is a scalar; every field needs a leading row dimension")
    if arr.dtype.kind in "SU":
        arr = arr.astype(object)
    if arr.dtype.kind == "O":
        arr = np.array(
            [x.decode() if isinstance(x, bytes) else str(x) for x in arr.reshape(-1)], dtype=object
        )
        arr = arr.reshape(np.shape(value))
    return arr


def _prepare(arrays: Mapping[str, Any], where: str) -> tuple[dict[str, np.ndarray], Layout]:
    """Arrays as numpy, offsets as int64, layout checked (the same rules the reader applies)."""
    out: dict[str, np.ndarray] = {}
    for name, value in arrays.items():
        if not isinstance(name, str) or not name or name == ATTRS_KEY or "/" in name:
            raise DataError(f"{where}: invalid field name {name!r}")
        out[name] = _as_array(name, value, where)
    layout = analyze_layout({n: a.shape for n, a in out.items()}, where)
    for otype in layout.object_fields:
        iname = index_name(otype)
        check_offsets(out[iname], layout.object_lengths[otype], iname, where)
        out[iname] = out[iname].astype(np.int64, copy=False)
    return out, layout


def write_store(
    path: str | os.PathLike,
    arrays: Mapping[str, Any],
    *,
    attrs: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write a complete store (HDF5 for ``.h5``/``.hdf5``, ``.pt`` otherwise); return its path.

    Datasets are contiguous and uncompressed so readers can memory-map them. Provenance attributes are
    added to ``attrs`` (dicts/lists JSON-encoded). The file appears under its name only once complete.
    """
    path = Path(path)
    _check_output(path, overwrite)
    prepared, layout = _prepare(arrays, str(path))
    checksum = content_sha256(prepared)
    file_attrs = record(extra=attrs) | {CHECKSUM_ATTR: checksum}
    with atomic_output(path, overwrite=overwrite) as tmp:
        try:
            (write_hdf5 if is_hdf5_path(path) else write_pt)(tmp, prepared, file_attrs)
        except (OSError, RuntimeError) as err:  # h5py reports write failures as either
            raise write_error(path, err) from err
        verify_written(tmp, path, layout.n_events)
    remember(path, **{CHECKSUM_ATTR: checksum})
    log.info("wrote %s (%d events)", path, layout.n_events)
    return path


def verify_written(tmp: Path, path: Path, n_events: int) -> None:
    """Reopen what was just written and check it before it gets its final name: readable, the
    expected number of events, and the content checksum recorded in its attributes (so a write error
    HDF5 did not report cannot hide as zeros)."""
    try:
        store = EventStore(tmp, use_cache=False)
    except DataError as err:
        raise DataError(
            f"{path}: the file just written does not read back ({err}); nothing was written under that name"
        ) from err
    store.close()
    if store.n_events != n_events:
        raise DataError(
            f"{path}: {store.n_events} events read back from the file just written, {n_events} were written; "
            "nothing was written under that name"
        )


class StoreWriter:
    """Stream events into a store chunk by chunk, with bounded memory for HDF5.

    Each ``append(chunk)`` takes a self-contained set of events in the store layout (its own
    ``event_<O>_index`` starting at 0). HDF5 chunks go to resizable datasets of a temporary file; a
    successful ``close()`` copies them block by block into contiguous datasets of the final size
    (memory-mappable) and renames the result into place. Leaving the ``with`` block by an exception
    deletes every temporary file and creates no output. ``.pt`` stores are assembled in memory.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        attrs: Mapping[str, Any] | None = None,
        overwrite: bool = False,
        object_types: Sequence[str] | None = ("hits",),
    ) -> None:
        self.path = Path(path)
        _check_output(self.path, overwrite)
        self.overwrite = overwrite
        self.attrs = dict(attrs or {})
        self.object_types = tuple(object_types or ())
        self.n_events = 0
        self.n_chunks = 0
        self._hdf5 = is_hdf5_path(self.path)
        self._chunks_tmp: Path | None = None
        self._hash = ContentHash()
        self._rows: dict[str, int] = {}
        self._schema: dict[str, tuple[np.dtype, tuple[int, ...]]] | None = None
        self._totals: dict[str, int] = {}
        self._h5: ChunkStaging | None = None
        self._parts: dict[str, list[np.ndarray]] = {}
        self._done = False

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def append(self, chunk: Mapping[str, Any]) -> None:
        """Add the events of ``chunk`` after those already written."""
        if self._done:
            raise DataError(f"{self.path}: append() after close()")
        where = f"{self.path} (chunk {self.n_chunks})"
        try:
            arrays, layout = _prepare(chunk, where)
            require_fields(where, [index_name(t) for t in self.object_types], arrays)
            if self._schema is None:
                self._start(arrays, layout)
            arrays = self._conform(arrays, where)
            for otype in layout.object_fields:
                arrays[index_name(otype)] = arrays[index_name(otype)] + self._totals[otype]
            for name, arr in arrays.items():
                self._hash.update(name, arr)
                self._rows[name] = self._rows.get(name, 0) + len(arr)
                if self._h5 is not None:
                    self._h5.append(name, arr)
                else:
                    self._parts[name].append(arr)
            for otype, n in layout.object_lengths.items():
                self._totals[otype] += n
            self.n_events += layout.n_events
            self.n_chunks += 1
        except (OSError, RuntimeError) as err:  # h5py reports write failures as either
            self.abort()
            raise write_error(self.path, err) from err
        except BaseException:
            self.abort()
            raise

    def _start(self, arrays: dict[str, np.ndarray], layout: Layout) -> None:
        self._schema = {n: (a.dtype, a.shape[1:]) for n, a in arrays.items()}
        self._totals = {otype: 0 for otype in layout.object_fields}
        if self._hdf5:
            self._chunks_tmp = reserve(self.path, ".chunks", directory=True)
            self._h5 = ChunkStaging(self._chunks_tmp)
            for name, arr in arrays.items():
                self._h5.create(name, arr)
        else:
            self._parts = {n: [] for n in arrays}

    def _conform(self, arrays: dict[str, np.ndarray], where: str) -> dict[str, np.ndarray]:
        assert self._schema is not None
        if set(arrays) != set(self._schema):
            raise DataError(
                f"{where}: fields differ from the first chunk: "
                f"expected {sorted(self._schema)}, found {sorted(arrays)}"
            )
        out = {}
        for name, arr in arrays.items():
            dtype, tail = self._schema[name]
            if arr.shape[1:] != tail:
                raise DataError(
                    f"{where}: '{name}' has rows of shape {arr.shape[1:]}, the first chunk {tail}"
                )
            if arr.dtype != dtype and not (arr.dtype.kind == "O" and dtype.kind == "O"):
                if not np.can_cast(arr.dtype, dtype, casting="same_kind"):
                    raise DataError(f"{where}: '{name}' is {arr.dtype}, the first chunk {dtype}")
                arr = arr.astype(dtype)
            out[name] = arr
        return out

    def close(self) -> Path:
        """Finish the file (contiguous datasets, provenance attributes) and rename it into place."""
        if self._done:
            return self.path
        try:
            shapes = {n: (self._rows.get(n, 0), *tail) for n, (_, tail) in (self._schema or {}).items()}
            checksum = self._hash.hexdigest(shapes)
            attrs = record(extra=self.attrs) | {CHECKSUM_ATTR: checksum}
            with atomic_output(self.path, overwrite=self.overwrite) as tmp:
                try:
                    if self._schema is None:
                        log.warning("%s: no events were appended; writing an empty store", self.path)
                        (write_hdf5 if self._hdf5 else write_pt)(tmp, {}, attrs)
                    elif self._h5 is not None:
                        self._h5.finish(tmp, attrs)
                    else:
                        write_pt(tmp, {n: np.concatenate(p) for n, p in self._parts.items()}, attrs)
                        self._parts.clear()
                except (OSError, RuntimeError) as err:  # h5py reports write failures as either
                    raise write_error(self.path, err) from err
                verify_written(tmp, self.path, self.n_events)
            remember(self.path, **{CHECKSUM_ATTR: checksum})
        except BaseException:
            self.abort()
            raise
        finally:
            if self._chunks_tmp is not None:
                remove_path(self._chunks_tmp)
        self._done = True
        log.info("wrote %s (%d events in %d chunks)", self.path, self.n_events, self.n_chunks)
        return self.path

    def abort(self) -> None:
        """Drop everything written so far: temporary files removed, no output."""
        self._parts.clear()
        if self._chunks_tmp is not None:
            remove_path(self._chunks_tmp)
        self._done = True


# --------------------------------------------------------------------------------------------- reading


class _PtReader:
    """Same interface as Hdf5Reader over the arrays of a ``.pt`` store (memory-mapped tensors)."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.arrays = arrays

    def array(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def read_slice(self, name: str, start: int, stop: int) -> np.ndarray:
        return self.arrays[name][start:stop]

    def load(self, name: str) -> np.ndarray:
        return np.array(self.arrays[name])

    def close(self) -> None:
        self.arrays = {}


def decode_attr(value: Any) -> Any:
    """An HDF5 attribute as Python: bytes -> str, numpy scalars -> Python scalars, JSON text -> objects
    (provenance dicts and lists are stored as JSON strings)."""
    if isinstance(value, bytes):
        value = value.decode(errors="replace")
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str) and (value[:1] in ("{", "[") or value == "null"):
        try:
            return json.loads(value)
        except ValueError:
            pass
    return value


def _decode_attrs(raw: Mapping[str, Any]) -> dict[str, Any]:
    return {key: decode_attr(value) for key, value in raw.items()}


class _Gather:
    """Where the rows of a batch of events lie in the flat arrays, computed once for every field."""

    def __init__(self, bounds: np.ndarray, rows: np.ndarray) -> None:
        self.starts = bounds[rows]
        self.ends = bounds[rows + 1]
        counts = self.ends - self.starts
        self.offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(counts, out=self.offsets[1:])
        self.counts = counts
        self.slices: list[tuple[int, int]] | None = None
        self._positions: np.ndarray | None = None
        if len(rows):
            breaks = np.flatnonzero(rows[1:] != rows[:-1] + 1) + 1
            if len(breaks) < _MAX_SLICE_RUNS:
                first = np.concatenate([[0], breaks])
                last = np.concatenate([breaks, [len(rows)]]) - 1
                self.slices = [(int(self.starts[a]), int(self.ends[b])) for a, b in zip(first, last)]
        else:
            self.slices = []

    @property
    def positions(self) -> np.ndarray:
        """Flat row of every gathered element (the repeat/arange trick)."""
        if self._positions is None:
            total = int(self.offsets[-1])
            self._positions = np.repeat(self.starts - self.offsets[:-1], self.counts) + np.arange(
                total, dtype=np.int64
            )
        return self._positions

    def take(self, arr: np.ndarray) -> np.ndarray:
        if self.slices is not None:
            if len(self.slices) == 1:
                a, b = self.slices[0]
                return np.array(arr[a:b])
            if not self.slices:
                return arr[:0].copy()
            return np.concatenate([arr[a:b] for a, b in self.slices])
        return arr[self.positions]


def gather_events(
    arrays: Mapping[str, np.ndarray], bounds: np.ndarray, rows: np.ndarray
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Flat rows of events ``rows`` (in that order) from in-memory ``arrays`` with ``bounds`` ``(N+1,)``."""
    g = _Gather(bounds, rows)
    return {name: g.take(arr) for name, arr in arrays.items()}, g.offsets


class EventStore:
    """An opened event store: metadata in memory, data read lazily per batch.

    Attributes: ``path``, ``format`` (``"hdf5"`` or ``"pt"``), ``n_events``, ``event_fields``
    (per-event dataset names), ``object_types`` (e.g. ``{"hits": ["hit_charge", "hit_pmt", ...]}``),
    ``attrs`` (provenance; JSON-encoded values decoded). Picklable; file handles and memory maps are
    (re)opened in whichever process reads.
    """

    def __init__(self, path: Path, use_cache: bool = True) -> None:
        self.path = path
        self._pid: int | None = None
        self._reader: Hdf5Reader | _PtReader | None = None
        self._cache: dict[str, np.ndarray] = {}
        if is_hdf5_path(path) or (h5py.is_hdf5(path) and not is_pt_file(path)):
            if not h5py.is_hdf5(path):
                raise DataError(f"{path}: not an HDF5 file (no HDF5 signature; wrong file or corrupt header)")
            self.format = "hdf5"
            infos, raw_attrs = inspect_hdf5(path)
            self._infos = {n: (i.shape, i.dtype, i.is_string) for n, i in infos.items()}
            self._h5_infos = infos
        else:
            if not is_pt_file(path):
                if path.suffix.lower() == ".pt":
                    raise DataError(f"{path}: not a readable torch .pt archive: truncated or corrupt")
                raise DataError(
                    f"{path}: neither an HDF5 file nor a torch .pt archive "
                    "(truncated, corrupt or another format)"
                )
            self.format = "pt"
            arrays, raw_attrs = load_pt(path)
            self._infos = {n: (a.shape, a.dtype, a.dtype.kind == "O") for n, a in arrays.items()}
            self._set_reader(_PtReader(arrays))
        self.attrs = _decode_attrs(raw_attrs)
        self._verify_checksum(use_cache)
        where = str(path)
        self.layout = analyze_layout({n: s for n, (s, _, _) in self._infos.items()}, where)
        self.n_events = self.layout.n_events
        self.event_fields = list(self.layout.event_fields)
        self.object_types = {t: list(f) for t, f in self.layout.object_fields.items()}
        self._bounds: dict[str, np.ndarray] = {}
        for otype in self.object_types:
            iname = index_name(otype)
            index = self._read_whole(iname)
            self._bounds[otype] = check_offsets(index, self.layout.object_lengths[otype], iname, where)

    def _verify_checksum(self, use_cache: bool) -> None:
        """DataError when the content no longer matches the checksum its writer recorded (stores written
        elsewhere, e.g. by WatChMaL, carry none and are not checked). Once per file version."""
        expected = self.attrs.get(CHECKSUM_ATTR)
        if not isinstance(expected, str) or (use_cache and cached(self.path).get(CHECKSUM_ATTR) == expected):
            return
        try:
            if self.format == "hdf5":
                with open_h5(self.path) as f:
                    actual = content_sha256({n: f[n] for n in self._infos})
            else:
                actual = content_sha256(self._handle().arrays)  # type: ignore[union-attr]
        except (OSError, RuntimeError) as exc:
            raise DataError(
                f"{self.path}: reading the file failed, it is truncated or corrupt ({exc})"
            ) from exc
        if actual != expected:
            raise DataError(
                f"{self.path}: the content does not match the checksum recorded when it was written "
                f"('{CHECKSUM_ATTR}' attribute): the file was damaged or changed after writing; refusing it"
            )
        if use_cache:
            remember(self.path, **{CHECKSUM_ATTR: expected})

    # -- per-process handles ------------------------------------------------------------------------

    def _set_reader(self, reader: Hdf5Reader | _PtReader) -> None:
        self._reader, self._pid, self._cache = reader, os.getpid(), {}

    def _handle(self) -> Hdf5Reader | _PtReader:
        """The reader of this process: opened on first use and again after a fork."""
        if self._reader is None or self._pid != os.getpid():
            if self._reader is not None:
                # Inherited through a fork: never use it, and never close it here (that is the parent's
                # HDF5 handle); keeping it referenced stops garbage collection from closing it.
                _INHERITED_READERS.append(self._reader)
            if self.format == "hdf5":
                self._set_reader(Hdf5Reader(self.path, self._h5_infos))
            else:
                self._set_reader(_PtReader(load_pt(self.path)[0]))
        assert self._reader is not None  # (re)opened just above
        return self._reader

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_reader=None, _pid=None, _cache={})
        return state

    def close(self) -> None:
        """Release file handles and maps (they reopen on the next read)."""
        if self._reader is not None and self._pid == os.getpid():
            self._reader.close()
        self._reader, self._pid, self._cache = None, None, {}

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self.n_events

    def __repr__(self) -> str:
        counts = ", ".join(f"{t}={self.n_objects(t)}" for t in self.object_types)
        return f"EventStore({str(self.path)!r}, format={self.format}, n_events={self.n_events}, {counts})"

    # -- metadata -----------------------------------------------------------------------------------

    @property
    def fields(self) -> list[str]:
        """Every dataset name in the store."""
        return sorted(self._infos)

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._infos[self._check_name(name)][0])

    def dtype(self, name: str) -> np.dtype:
        """numpy dtype (``object`` for strings)."""
        _, dtype, is_str = self._infos[self._check_name(name)]
        return np.dtype(object) if is_str else dtype

    def n_objects(self, object_type: str = "hits") -> int:
        return int(self.bounds(object_type)[-1])

    def bounds(self, object_type: str = "hits") -> np.ndarray:
        """``(N+1,)`` int64: event ``i`` owns flat rows ``[bounds[i], bounds[i+1])``."""
        if object_type not in self._bounds:
            raise DataError(
                f"{self.path}: no object type '{object_type}' (no dataset '{index_name(object_type)}'); "
                f"object types present: {sorted(self.object_types)}"
            )
        return self._bounds[object_type]

    def counts(self, object_type: str = "hits") -> np.ndarray:
        """Objects per event, ``(N,)``."""
        return np.diff(self.bounds(object_type))

    def _check_name(self, name: str) -> str:
        if name not in self._infos:
            require_fields(str(self.path), [name], self._infos)
        return name

    def require(self, names: Iterable[str]) -> None:
        """DataError listing expected and found datasets unless every name in ``names`` is present."""
        require_fields(str(self.path), list(names), self._infos)

    # -- data ---------------------------------------------------------------------------------------

    def _read_whole(self, name: str) -> np.ndarray:
        try:
            return self._handle().load(name)
        except OSError as exc:
            raise DataError(
                f"{self.path}: reading '{name}' failed; the file is truncated or corrupt ({exc})"
            ) from exc

    def array(self, name: str) -> np.ndarray:
        """A whole dataset: a read-only memory map when possible, else loaded (strings as ``str`` objects)."""
        self._check_name(name)
        arr = self._handle().array(name)
        if arr is not None:
            return arr
        if name not in self._cache:
            self._cache[name] = self._read_whole(name)
        return self._cache[name]

    def _event_array(self, name: str) -> np.ndarray:
        # Per-event arrays are small: those that cannot be mapped are loaded once per process.
        return self.array(name)

    def read(
        self,
        indices: Sequence[int] | np.ndarray,
        hit_fields: Sequence[str] | None = None,
        event_fields: Sequence[str] | None = None,
        object_type: str = "hits",
    ) -> tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray]]:
        """Events ``indices`` (store rows, in order) as flat arrays, offsets ``(B+1,)`` and per-event arrays.

        ``hit_fields`` are flat fields of ``object_type`` by store name (default: all of them);
        ``event_fields`` per-event arrays (default: all). Pass ``()`` to read none.
        """
        rows = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(rows) and (rows.min() < 0 or rows.max() >= self.n_events):
            bad = rows[(rows < 0) | (rows >= self.n_events)][0]
            raise IndexError(f"{self.path}: event {bad} out of range [0, {self.n_events})")
        bounds = self.bounds(object_type)
        flat_names = list(self.object_types[object_type] if hit_fields is None else hit_fields)
        event_names = list(self.event_fields if event_fields is None else event_fields)
        self.require([*flat_names, *event_names])
        wrong = [n for n in flat_names if n not in self.object_types[object_type]]
        if wrong:
            raise DataError(
                f"{self.path}: {wrong} are not flat {object_type} fields; "
                f"those are {self.object_types[object_type]}"
            )
        handle = self._handle()
        g = _Gather(bounds, rows)
        flat: dict[str, np.ndarray] = {}
        for name in flat_names:
            arr = handle.array(name)
            if arr is not None:
                flat[name] = g.take(arr)
            else:
                assert isinstance(handle, Hdf5Reader)  # .pt readers map every array
                flat[name] = handle.read_ranges(name, g.starts, g.ends, g.positions)
        events = {name: self._event_array(name)[rows] for name in event_names}
        return flat, g.offsets, events

    def validate(self, n_pmts: int | None = None, full: bool = True, require: Iterable[str] = ()) -> dict:
        """Check values beyond the structure checked at open; return a short summary.

        Ids and labels (``validate.INTEGER_FIELDS``) must have an integer dtype, ``hit_pmt`` must lie in
        ``[0, n_pmts)`` (when given) and float object fields must be finite.
        ``full=False`` scans only the first and last 1,000 events. ``require`` lists datasets that must
        exist. Raises DataError naming the file, field, value and event. A full scan that passed is
        remembered for this file version (and ``n_pmts``), so it runs once per store, not once per run.
        """
        where = str(self.path)
        self.require(require)
        check_integer_fields({n: self.dtype(n) for n in self._infos}, where)
        done = f"validated_n_pmts_{n_pmts}"
        if full and cached(self.path).get(done):
            return self._summary()
        ranges = None
        if not full:
            ranges = {}
            for otype, b in self._bounds.items():
                k = min(1000, self.n_events)
                ranges[otype] = sorted({(int(b[0]), int(b[k])), (int(b[self.n_events - k]), int(b[-1]))})
        handle = self._handle()
        check_values(
            handle.read_slice,
            self.object_types,
            {n: self.dtype(n) for n in self._infos},
            self._bounds,
            where,
            n_pmts=n_pmts,
            row_ranges=ranges,
        )
        if full:
            remember(self.path, **{done: True})
        return self._summary()

    def _summary(self) -> dict[str, Any]:
        where = str(self.path)
        return {
            "path": where,
            "format": self.format,
            "n_events": self.n_events,
            "n_objects": {t: self.n_objects(t) for t in self.object_types},
            "event_fields": list(self.event_fields),
        }


def open_store(path: str | os.PathLike | EventStore, require: Iterable[str] = ()) -> EventStore:
    """Open an HDF5 or ``.pt`` store (told apart by content, then suffix) with the structural checks.

    ``require`` names datasets that must be present. Missing, truncated or foreign files raise DataError.
    """
    if isinstance(path, EventStore):
        path.require(require)
        return path
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: event store not found (no such file)")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, expected an event store file (.h5/.hdf5 or .pt)")
    if not path.is_file():
        raise DataError(
            f"{path}: not a regular file (a pipe, a device or a socket); expected an event store file "
            "(.h5/.hdf5 or .pt)"
        )
    store = EventStore(path)
    store.require(require)
    return store
