"""HDF5 backend of the event store: inspection, memory-mapped reads, contiguous and streaming writes.

Contiguous, uncompressed datasets are read through ``np.memmap`` at ``dset.id.get_offset()`` (what
WatChMaL does): no HDF5 call per batch, safe to share across forked DataLoader workers. Anything else
(chunked, compressed, variable-length strings) falls back to h5py reads.
"""

from __future__ import annotations

import errno
import json
import logging
import re
import resource
import shutil
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
            for name in f:
                link = f.get(name, getlink=True)
                if isinstance(link, h5py.ExternalLink):
                    raise DataError(
                        f"{path}: '{name}' is an external link to {link.filename}:{link.path}; recoml reads "
                        "only data stored in the file itself (copy the data in, e.g. with h5copy)"
                    )
                obj = f[name]
                if not isinstance(obj, h5py.Dataset):
                    log.debug("%s: ignoring group '%s'", path, name)
                    continue
                if obj.external or obj.is_virtual:
                    where = "in external raw files" if obj.external else "as a virtual dataset of other files"
                    raise DataError(
                        f"{path}: dataset '{name}' is stored {where}; recoml reads only data stored in the "
                        "file itself (copy the data in, e.g. with h5repack)"
                    )
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
            if not infos:
                nested = nested_store(f)
                if nested:
                    raise DataError(
                        f"{path}: no datasets at the top level; the store lies in the group '{nested}' "
                        "(recoml reads event-store datasets from the file's root: extract it with "
                        f"h5copy -s /{nested} -d / or write it at the top level)"
                    )
        except (OSError, RuntimeError, KeyError) as exc:
            raise DataError(f"{path}: the HDF5 file is truncated or corrupt ({exc})") from exc
    return infos, attrs


def nested_store(f: h5py.File) -> str | None:
    """The first group (depth-first) holding an offsets array ``event_*_index``, if any."""
    found: list[str] = []

    def visit(name: str, obj: object) -> None:
        if not found and isinstance(obj, h5py.Dataset) and "/" in name:
            if re.match(r"event_\w+_index$", name.rsplit("/", 1)[1]):
                found.append(name.rsplit("/", 1)[0])

    f.visititems(visit)
    return found[0] if found else None


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
    preflight(tmp, sum(a.nbytes if a.dtype.kind not in "OSU" else 64 * a.size for a in arrays.values()))
    with h5py.File(tmp, "w") as f:
        for name, arr in arrays.items():
            if arr.dtype.kind in "OSU":
                f.create_dataset(name, data=arr.astype(object), dtype=h5py.string_dtype())
            else:
                f.create_dataset(name, data=arr)
        write_attrs(f, attrs)
        f.flush()  # raises on a write error that closing would only print


class ChunkStaging:
    """The first stage of StoreWriter: appended chunks go to one raw binary file per numeric field in a
    staging directory (plain writes, so a full disk or a file-size limit raises at once instead of
    disappearing in HDF5's chunk cache); string fields stay in memory (they are per-event and small).
    :meth:`finish` copies everything into contiguous datasets of the final HDF5 file."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.schema: dict[str, tuple[np.dtype, tuple[int, ...]]] = {}
        self.rows: dict[str, int] = {}
        self.strings: dict[str, list[Any]] = {}
        self._files: dict[str, Path] = {}

    def create(self, name: str, arr: np.ndarray) -> None:
        self.schema[name] = (arr.dtype, tuple(arr.shape[1:]))
        self.rows[name] = 0
        if arr.dtype.kind in "OSU":
            self.strings[name] = []
        else:
            self._files[name] = self.directory / f"{len(self._files)}.bin"
            self._files[name].touch()

    def append(self, name: str, arr: np.ndarray) -> None:
        if name in self.strings:
            self.strings[name].extend(arr.reshape(-1).tolist())
        elif len(arr):
            with open(self._files[name], "ab") as fh:
                fh.write(np.ascontiguousarray(arr, dtype=self.schema[name][0]).tobytes())
        self.rows[name] += len(arr)

    def nbytes(self) -> int:
        """Bytes the final file needs, besides HDF5's metadata."""
        numeric = sum(f.stat().st_size for f in self._files.values())
        return numeric + sum(64 * len(v) for v in self.strings.values())

    def finish(self, out_tmp: Path, attrs: dict[str, Any], block_bytes: int = 64 << 20) -> None:
        """Write every field as a contiguous dataset of the final size, in blocks of ~``block_bytes``."""
        preflight(out_tmp, self.nbytes())
        with h5py.File(out_tmp, "w") as out:
            for name, (dtype, tail) in self.schema.items():
                shape = (self.rows[name], *tail)
                if name in self.strings:
                    data = np.empty(len(self.strings[name]), dtype=object)
                    data[:] = self.strings[name]
                    out.create_dataset(name, data=data.reshape(shape), dtype=h5py.string_dtype())
                    continue
                dst = out.create_dataset(name, shape=shape, dtype=dtype)
                if not self.rows[name]:
                    continue
                src = np.memmap(self._files[name], mode="r", dtype=dtype, shape=shape)
                row_bytes = max(1, int(np.prod(tail, dtype=np.int64)) * dtype.itemsize)
                step = max(1, block_bytes // row_bytes)
                for a in range(0, shape[0], step):
                    dst[a : a + step] = src[a : a + step]
                del src
            write_attrs(out, attrs)
            out.flush()


def preflight(path: Path, nbytes: int) -> None:
    """OSError (EFBIG/ENOSPC) before writing ``nbytes`` to ``path`` when the file-size limit or the free
    disk space cannot hold them: HDF5 does not recover from a failed write (it may even crash)."""
    need = int(nbytes * 1.01) + (1 << 20)  # + HDF5 metadata
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    if soft != resource.RLIM_INFINITY and need > soft:
        raise OSError(errno.EFBIG, f"{need} bytes to write, the file-size limit is {soft}")
    free = shutil.disk_usage(path.parent).free
    if need > free:
        raise OSError(errno.ENOSPC, f"{need} bytes to write, {free} free")
