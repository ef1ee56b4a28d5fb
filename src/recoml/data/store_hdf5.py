"""HDF5 backend of the event store: inspection, memory-mapped reads, contiguous and streaming writes.

Contiguous, uncompressed datasets are read through ``np.memmap`` at ``dset.id.get_offset()`` (what
WatChMaL does): no HDF5 call per batch, safe to share across forked DataLoader workers. Anything else
(chunked, compressed, variable-length strings) falls back to h5py reads.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from recoml.errors import DataError

log = logging.getLogger(__name__)

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")
_MAPPABLE_KINDS = "biufc"  # bool, int, uint, float, complex: fixed-size numbers


@dataclass(frozen=True)
class DatasetInfo:
    """What a reader needs to know about one dataset without the file open."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    offset: int | None  # byte offset in the file when the dataset can be memory-mapped
    is_string: bool


def open_h5(path: Path) -> h5py.File:
    """Open read-only; a clear DataError for files HDF5 cannot open (truncated, corrupt)."""
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        if "lock" in str(exc).lower():  # network file systems without POSIX locks
            try:
                return h5py.File(path, "r", locking=False)
            except OSError as exc2:
                exc = exc2
        raise DataError(
            f"{path}: the HDF5 file is truncated or corrupt and cannot be opened ({exc})"
        ) from exc


def _is_string(dset: h5py.Dataset) -> bool:
    return h5py.check_string_dtype(dset.dtype) is not None or dset.dtype.kind in "OSU"


def inspect_hdf5(path: Path) -> tuple[dict[str, DatasetInfo], dict[str, Any]]:
    """Read the top-level datasets' metadata and the file attributes, then close the file."""
    size = path.stat().st_size
    infos: dict[str, DatasetInfo] = {}
    with open_h5(path) as f:
        try:
            attrs = {k: f.attrs[k] for k in f.attrs}
            for name, obj in f.items():
                if not isinstance(obj, h5py.Dataset):
                    log.debug("%s: ignoring group '%s'", path, name)
                    continue
                is_str = _is_string(obj)
                offset = None
                mappable = (
                    not is_str
                    and obj.dtype.kind in _MAPPABLE_KINDS
                    and obj.chunks is None
                    and obj.compression is None
                    and not obj.external
                    and obj.size > 0
                )
                if mappable:
                    offset = obj.id.get_offset()
                    if offset is not None and offset + obj.size * obj.dtype.itemsize > size:
                        raise DataError(
                            f"{path}: the file is truncated or corrupt: dataset '{name}' ends at byte "
                            f"{offset + obj.size * obj.dtype.itemsize} but the file has {size} bytes"
                        )
                infos[name] = DatasetInfo(name, tuple(obj.shape), np.dtype(obj.dtype), offset, is_str)
        except (OSError, RuntimeError, KeyError) as exc:
            raise DataError(f"{path}: the HDF5 file is truncated or corrupt ({exc})") from exc
    return infos, attrs


class Hdf5Reader:
    """Per-process access to one file: memmaps of contiguous datasets, h5py for the rest."""

    def __init__(self, path: Path, infos: dict[str, DatasetInfo]) -> None:
        self.path = path
        self.infos = infos
        self._maps: dict[str, np.ndarray] = {}
        self._file: h5py.File | None = None

    def array(self, name: str) -> np.ndarray | None:
        """The whole dataset as a memory-mapped ndarray, or None when it cannot be mapped."""
        if name in self._maps:
            return self._maps[name]
        info = self.infos[name]
        if info.offset is None:
            if not info.is_string and np.prod(info.shape) == 0:
                arr = np.empty(info.shape, dtype=info.dtype)
                self._maps[name] = arr
                return arr
            return None
        mm = np.memmap(self.path, mode="r", dtype=info.dtype, shape=info.shape, offset=info.offset)
        arr = np.asarray(mm)  # plain ndarray view: faster fancy indexing than the memmap subclass
        self._maps[name] = arr
        return arr

    def dataset(self, name: str) -> h5py.Dataset:
        if self._file is None:
            self._file = open_h5(self.path)
        dset = self._file[name]
        return dset.asstr() if self.infos[name].is_string and h5py.check_string_dtype(dset.dtype) else dset

    def read_slice(self, name: str, start: int, stop: int) -> np.ndarray:
        arr = self.array(name)
        if arr is not None:
            return arr[start:stop]
        try:
            return np.asarray(self.dataset(name)[start:stop])
        except OSError as exc:
            raise DataError(
                f"{self.path}: reading '{name}' failed, the file is truncated or corrupt ({exc})"
            ) from exc

    def load(self, name: str) -> np.ndarray:
        """The whole dataset in memory (strings as an object array of ``str``)."""
        arr = self.array(name)
        if arr is not None:
            return np.array(arr)
        return self.read_slice(name, 0, self.infos[name].shape[0])

    def read_ranges(
        self, name: str, starts: np.ndarray, ends: np.ndarray, positions: np.ndarray
    ) -> np.ndarray:
        """Rows ``positions`` (which lie in ``[starts, ends)`` ranges) of a dataset that is not mapped.

        Reads merged runs (or the covering span when it is not much larger) with slice reads, which h5py
        does far faster than point selections.
        """
        info = self.infos[name]
        if len(positions) == 0:
            return np.empty((0, *info.shape[1:]), dtype=object if info.is_string else info.dtype)
        keep = ends > starts
        s, e = starts[keep], ends[keep]
        order = np.argsort(s, kind="stable")
        s, e = s[order], e[order]
        lo, hi = int(s[0]), int(e.max())
        if hi - lo <= 4 * len(positions) + (1 << 16):
            return self.read_slice(name, lo, hi)[positions - lo]
        # Merge overlapping/adjacent runs, read each, and map positions into the concatenated buffer.
        run_end = np.maximum.accumulate(e)
        new_run = np.ones(len(s), dtype=bool)
        new_run[1:] = s[1:] > run_end[:-1]
        rs = s[new_run]
        re_ = np.append(run_end[np.flatnonzero(new_run)[1:] - 1], run_end[-1])
        parts = [self.read_slice(name, int(a), int(b)) for a, b in zip(rs, re_)]
        buf_start = np.concatenate([[0], np.cumsum(re_ - rs)[:-1]])
        k = np.searchsorted(rs, positions, side="right") - 1
        return np.concatenate(parts)[positions - rs[k] + buf_start[k]]

    def close(self) -> None:
        self._maps.clear()
        if self._file is not None:
            try:
                self._file.close()
            finally:
                self._file = None


def _encode_attr(value: Any) -> Any:
    if isinstance(value, dict | list | tuple) or value is None:
        return json.dumps(value, default=str)
    if isinstance(value, str | bytes | int | float | bool | np.generic | np.ndarray):
        return value
    return str(value)


def write_attrs(f: h5py.File, attrs: dict[str, Any]) -> None:
    for key, value in attrs.items():
        f.attrs[key] = _encode_attr(value)


def _h5_dtype(arr: np.ndarray) -> Any:
    return h5py.string_dtype() if arr.dtype.kind in "OSU" else arr.dtype


def write_hdf5(tmp: Path, arrays: dict[str, np.ndarray], attrs: dict[str, Any]) -> None:
    """Write every array as a contiguous, uncompressed dataset (memory-mappable, WatChMaL-readable)."""
    with h5py.File(tmp, "w") as f:
        for name, arr in arrays.items():
            if arr.dtype.kind in "OSU":
                f.create_dataset(name, data=arr.astype(object), dtype=h5py.string_dtype())
            else:
                f.create_dataset(name, data=arr)
        write_attrs(f, attrs)


class Hdf5AppendFile:
    """Resizable chunked datasets that grow with every appended chunk (the first stage of StoreWriter)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.f = h5py.File(tmp, "w")

    def create(self, name: str, arr: np.ndarray) -> None:
        tail = arr.shape[1:]
        row_bytes = max(
            1, int(np.prod(tail, dtype=np.int64)) * (16 if arr.dtype.kind in "OSU" else arr.itemsize)
        )
        rows = max(1, (1 << 20) // row_bytes)
        self.f.create_dataset(
            name, shape=(0, *tail), maxshape=(None, *tail), chunks=(rows, *tail), dtype=_h5_dtype(arr)
        )

    def append(self, name: str, arr: np.ndarray) -> None:
        d = self.f[name]
        n = d.shape[0]
        d.resize(n + len(arr), axis=0)
        if len(arr):
            d[n:] = arr.astype(object) if arr.dtype.kind in "OSU" else arr

    def finish(self, out_tmp: Path, attrs: dict[str, Any], block_bytes: int = 64 << 20) -> None:
        """Copy every dataset into a contiguous one of the final size, in blocks of ~``block_bytes``."""
        with h5py.File(out_tmp, "w") as out:
            for name, src in self.f.items():
                is_str = h5py.check_string_dtype(src.dtype) is not None
                dst = out.create_dataset(name, shape=src.shape, dtype=src.dtype)
                row_bytes = max(
                    1, int(np.prod(src.shape[1:], dtype=np.int64)) * (16 if is_str else src.dtype.itemsize)
                )
                step = max(1, block_bytes // row_bytes)
                for a in range(0, src.shape[0], step):
                    b = min(src.shape[0], a + step)
                    dst[a:b] = src[a:b]
            write_attrs(out, attrs)
        self.close()

    def close(self) -> None:
        if self.f.id.valid:
            self.f.close()


def remove_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:  # pragma: no cover - e.g. permissions changed underneath
        log.warning("could not remove temporary file %s: %s", path, exc)
