"""A store's content checksum: recorded by the writers, verified before the rename and on open.

``content_sha256`` hashes every dataset (name, dtype, shape, values, in name order) so that a store damaged
after writing (a write error HDF5 swallowed, a truncated copy, a bit flip) is refused instead of read as
zeros. Verifying reads the whole file once; the result is cached per file version (path, size, mtime,
inode) in the user's cache directory, together with the full value validation (:meth:`EventStore.validate`),
so each store is checked once, not on every open.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from recoml.io.atomic import write_text

log = logging.getLogger(__name__)

#: File attribute holding the content checksum.
CHECKSUM_ATTR = "content_sha256"
_BLOCK_BYTES = 1 << 18  # small blocks: hashing must not raise a writer's peak memory


class ContentHash:
    """The checksum of a store, fed dataset by dataset in any order and block by block (a streaming
    writer hashes each chunk as it appends it: what it meant to write, not what it reads back)."""

    def __init__(self) -> None:
        self._data: dict[str, Any] = {}
        self._kind: dict[str, str] = {}

    def update(self, name: str, block: np.ndarray) -> None:
        if len(block) == 0:
            return
        is_str = block.dtype.kind in "OSU"
        if name not in self._data:
            self._data[name] = hashlib.sha256()
            self._kind[name] = "str" if is_str else block.dtype.str
        digest = self._data[name]
        if is_str:
            digest.update(
                b"".join((x if isinstance(x, bytes) else str(x).encode()) + b"\0" for x in block.reshape(-1))
            )
        else:
            digest.update(np.ascontiguousarray(block).reshape(-1).view(np.uint8))  # no copy

    def hexdigest(self, shapes: Mapping[str, tuple[int, ...]]) -> str:
        """The store checksum, given each dataset's final shape."""
        total = hashlib.sha256()
        for name in sorted(shapes):
            data = self._data[name].hexdigest() if name in self._data else hashlib.sha256().hexdigest()
            kind = self._kind.get(name, "empty")
            total.update(f"{name}\0{kind}\0{tuple(int(n) for n in shapes[name])}\0{data}\n".encode())
        return total.hexdigest()


def content_sha256(datasets: Mapping[str, Any]) -> str:
    """The store checksum of datasets (numpy arrays or h5py datasets: anything with shape, dtype and
    slicing), read in blocks of ~256 KiB. Strings hash as UTF-8, whatever their storage type."""
    hasher = ContentHash()
    for name, data in datasets.items():
        shape = tuple(int(n) for n in data.shape)
        if not shape or shape[0] == 0:
            continue
        is_str = np.dtype(data.dtype).kind in "OSU"
        item = 256 if is_str else data.dtype.itemsize  # a string is read as a Python object
        row_bytes = max(1, int(np.prod(shape[1:], dtype=np.int64)) * item)
        step = max(1, _BLOCK_BYTES // row_bytes)
        for a in range(0, shape[0], step):
            hasher.update(name, np.asarray(data[a : a + step]))
    return hasher.hexdigest({name: tuple(data.shape) for name, data in datasets.items()})


def _cache_dir() -> Path:
    root = (
        os.environ.get("RECOML_CACHE_DIR")
        or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "recoml"
    )
    return Path(root) / "verified"


def _key(path: Path) -> str:
    st = path.stat()
    ident = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}"
    return hashlib.sha256(ident.encode()).hexdigest()[:32]


def cached(path: Path) -> dict[str, Any]:
    """What earlier checks of this very file version found (empty when none)."""
    try:
        return json.loads((_cache_dir() / f"{_key(path)}.json").read_text())
    except (OSError, ValueError):
        return {}


def remember(path: Path, **entries: Any) -> None:
    """Add ``entries`` to this file version's cache record (best effort: a read-only cache is fine)."""
    try:
        record = cached(path) | entries
        directory = _cache_dir()
        directory.mkdir(parents=True, exist_ok=True)
        write_text(directory / f"{_key(path)}.json", json.dumps(record, default=str))
    except Exception as exc:  # the cache only saves time
        log.debug("could not cache the checks of %s: %s", path, exc)
