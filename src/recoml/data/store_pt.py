"""``.pt`` backend of the event store: one ``torch.save`` file holding a dict of tensors with the HDF5 names.

Strings (``root_files``) are stored as a list of ``str``; provenance attributes under the key ``__attrs__``.
Reading uses ``torch.load(mmap=True, weights_only=True)``: tensors stay on disk until touched and no
pickled code is ever run.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recoml.errors import DataError

ATTRS_KEY = "__attrs__"


def is_pt_file(path: Path) -> bool:
    """A torch zip archive (the default ``torch.save`` format)."""
    return zipfile.is_zipfile(path)


def _to_saved(name: str, arr: np.ndarray) -> torch.Tensor | list[str]:
    if arr.dtype.kind in "OSU":
        return [x.decode() if isinstance(x, bytes) else str(x) for x in arr.reshape(-1)]
    try:
        return torch.from_numpy(np.ascontiguousarray(arr))
    except TypeError as exc:
        raise DataError(f"field '{name}' has dtype {arr.dtype}, which a .pt store cannot hold") from exc


def _encode_attr(value: Any) -> Any:
    if isinstance(value, dict | list | tuple) or value is None:
        return json.dumps(value, default=str)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, str | int | float | bool):
        return value
    return str(value)


def write_pt(tmp: Path, arrays: dict[str, np.ndarray], attrs: dict[str, Any]) -> None:
    payload: dict[str, Any] = {name: _to_saved(name, arr) for name, arr in arrays.items()}
    payload[ATTRS_KEY] = {k: _encode_attr(v) for k, v in attrs.items()}
    torch.save(payload, tmp)


def load_pt(path: Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Every field as a numpy array (views of memory-mapped tensors; strings as object arrays)."""
    try:
        try:
            obj = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format
    except Exception as exc:  # torch raises many types for bad archives
        raise DataError(f"{path}: not a readable .pt event store, truncated or corrupt ({exc})") from exc
    if not isinstance(obj, dict):
        raise DataError(f"{path}: a .pt event store must hold a dict of tensors, found {type(obj).__name__}")
    attrs = dict(obj.pop(ATTRS_KEY, {}) or {})
    arrays: dict[str, np.ndarray] = {}
    for name, value in obj.items():
        if isinstance(value, torch.Tensor):
            arrays[name] = value.numpy()
        elif isinstance(value, list | tuple):
            arr = np.empty(len(value), dtype=object)
            arr[:] = list(value)
            arrays[name] = arr
        else:
            raise DataError(
                f"{path}: field '{name}' is a {type(value).__name__}, expected a tensor or a list"
            )
    return arrays, attrs
