"""Flat HDF5 hit tables (one row per hit, an event column; e.g. KM3NeT's km3pipe ``hits`` table) into an
event store, through the same mapping, expressions and sensor lookup as ROOT long trees.

The mapping has ``format: hdf5``, ``tree`` the table's path inside the file (a compound dataset, or a
group of equal-length column datasets), ``layout: long`` and ``event_column``. Compressed tables are read
with the filters of ``hdf5plugin`` (Blosc, LZ4, Zstd, ...) registered.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401  (registers Blosc & co. with h5py)
import numpy as np

from recoml.conversion.mapping import RootMapping
from recoml.conversion.whole_files import FileReader
from recoml.errors import ConfigError, DataError

log = logging.getLogger(__name__)


def read_columns(path: Path, table: str, names: Sequence[str]) -> dict[str, np.ndarray]:
    """The columns ``names`` of ``table`` (compound dataset or group of datasets), in row order."""
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        raise DataError(f"{path}: not a readable HDF5 file ({err})") from err
    with handle as f:
        if table not in f:
            found = []
            f.visititems(
                lambda n, o: found.append(n) if isinstance(o, h5py.Dataset) and o.dtype.names else None
            )
            raise DataError(f"{path}: no table '{table}'; compound tables found: {found[:20]}")
        obj = f[table]
        try:
            if isinstance(obj, h5py.Dataset) and obj.dtype.names:
                have = list(obj.dtype.names)
                missing = [n for n in names if n not in have]
                if missing:
                    raise DataError(f"{path}: table '{table}' has no column(s) {missing}; columns: {have}")
                data = obj[()]
                return {n: np.asarray(data[n]) for n in names}
            if isinstance(obj, h5py.Group):
                have = [k for k in obj if isinstance(obj[k], h5py.Dataset)]
                missing = [n for n in names if n not in have]
                if missing:
                    raise DataError(
                        f"{path}: group '{table}' has no column dataset(s) {missing}; columns: {have}"
                    )
                return {n: np.asarray(obj[n][()]) for n in names}
        except OSError as err:  # a filter that is not available
            raise DataError(f"{path}: cannot decompress table '{table}' ({err})") from err
    raise DataError(f"{path}: '{table}' is neither a compound table nor a group of column datasets")


def hdf5_reader(mapping: RootMapping) -> FileReader:
    """The mapping's table (``tree``) of each input, read whole, as a :data:`FileReader` (rows: hits)."""
    if mapping.layout != "long" or mapping.event_column is None:
        raise ConfigError(f"mapping '{mapping.name}': an HDF5 hit table needs layout: long and event_column")
    column = mapping.event_column
    names = sorted({*mapping.branches})

    def read(path: Path) -> tuple[dict[str, Any], int, dict[str, Any]]:
        values = read_columns(path, mapping.tree, names)
        rows = len(np.asarray(values[column]))
        return values, rows, {"table": mapping.tree, "rows": rows}

    return read
