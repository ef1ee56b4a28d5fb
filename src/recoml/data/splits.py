"""Train/validation/test splits as sorted store rows, saved in WatChMaL's ``.npz`` format.

Keys ``train_idxs``, ``val_idxs``, ``test_idxs``. With ``groups`` (e.g. ``root_files``) whole groups go to
one split, so events from one source file never leak between training and testing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recoml.errors import DataError
from recoml.io.atomic import atomic_output

SPLIT_KEYS = ("train_idxs", "val_idxs", "test_idxs")
_META_KEY = "recoml_meta"


def _check_fractions(fractions: Sequence[float]) -> np.ndarray:
    f = np.asarray(fractions, dtype=np.float64)
    if f.shape != (3,) or (f < 0).any() or f.sum() > 1 + 1e-9 or f.sum() <= 0:
        raise DataError(
            f"split fractions must be 3 non-negative numbers (train, val, test) summing to at most 1, got "
            f"{list(fractions)}"
        )
    return f


def _counts(n: int, f: np.ndarray) -> np.ndarray:
    """Events per split: rounded, and exactly ``n`` in total when the fractions sum to 1."""
    c = np.floor(f * n + 0.5).astype(np.int64)
    if abs(f.sum() - 1) < 1e-9:
        c[2] = n - c[0] - c[1]
        if c[2] < 0:
            c[1] += c[2]
            c[2] = 0
    return c


def make_splits(
    n_events: int,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Random, seeded, disjoint splits of ``range(n_events)`` (sorted int64 each).

    Fractions summing to less than 1 leave the rest unused. With ``groups`` (one label per event),
    groups are shuffled and assigned whole, so split sizes follow the fractions only approximately.
    """
    f = _check_fractions(fractions)
    rng = np.random.default_rng(seed)
    if groups is None:
        perm = rng.permutation(n_events)
        c = _counts(n_events, f)
        cuts = np.cumsum(c)
        parts = [perm[: cuts[0]], perm[cuts[0] : cuts[1]], perm[cuts[1] : cuts[2]]]
    else:
        groups = np.asarray(groups)
        if len(groups) != n_events:
            raise DataError(f"split groups have {len(groups)} entries for {n_events} events")
        _, inverse, sizes = np.unique(groups, return_inverse=True, return_counts=True)
        order = rng.permutation(len(sizes))
        # A group goes to the split in which the middle of its run of events falls.
        ends = np.cumsum(sizes[order])
        middle = ends - sizes[order] / 2
        edges = np.cumsum(f) * n_events
        which = np.full(len(sizes), -1, dtype=np.int64)
        which[order] = np.searchsorted(edges, middle, side="right")
        which[which > 2] = -1  # beyond the last fraction: unused
        assignment = which[inverse.reshape(-1)]
        parts = [np.flatnonzero(assignment == k) for k in range(3)]
    return {key: np.sort(p).astype(np.int64) for key, p in zip(SPLIT_KEYS, parts)}


def splits_meta(
    n_events: int, fractions: Sequence[float], seed: int, group_by: str | None = None
) -> dict[str, Any]:
    """What made a split file: pass as ``meta`` to :func:`save_splits` so loaders can tell it is current."""
    return {
        "n_events": int(n_events),
        "fractions": [float(f) for f in fractions],
        "seed": int(seed),
        "group_by": group_by,
    }


def save_splits(
    path: str | os.PathLike, splits: Mapping[str, np.ndarray], meta: Mapping[str, Any] | None = None
) -> Path:
    """Write ``splits`` (and optional JSON ``meta``, e.g. seed and fractions) as ``.npz``, atomically."""
    path = Path(path)
    arrays = {k: np.asarray(v, dtype=np.int64) for k, v in splits.items()}
    if meta is not None:
        arrays[_META_KEY] = np.array(json.dumps(dict(meta), default=str))
    with atomic_output(path) as tmp, open(tmp, "wb") as fh:
        # numpy's stub types every **kwds value against the allow_pickle flag.
        np.savez(fh, **arrays)  # type: ignore[arg-type]
    return path


def split_meta(path: str | os.PathLike) -> dict[str, Any]:
    """The ``meta`` saved with :func:`save_splits` (empty when none, e.g. WatChMaL split files)."""
    try:
        with np.load(path) as data:
            return json.loads(str(data[_META_KEY])) if _META_KEY in data.files else {}
    except (OSError, ValueError):
        return {}


def load_splits(path: str | os.PathLike, n_events: int) -> dict[str, np.ndarray]:
    """Read a split file and check it against a store of ``n_events`` events (DataError if inconsistent)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: split file not found")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in SPLIT_KEYS if k not in data.files]
            if missing:
                raise DataError(
                    f"{path}: missing split key(s) {missing}; expected {list(SPLIT_KEYS)}, found {data.files}"
                )
            splits = {k: np.asarray(data[k]) for k in SPLIT_KEYS}
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{path}: not a readable .npz split file ({exc})") from exc
    owner = np.full(n_events, -1, dtype=np.int8)
    for j, (key, idx) in enumerate(splits.items()):
        if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
            raise DataError(f"{path}: '{key}' must be a 1-D integer array, it is {idx.dtype} {idx.shape}")
        idx = idx.astype(np.int64)
        bad = idx[(idx < 0) | (idx >= n_events)]
        if len(bad):
            raise DataError(
                f"{path}: '{key}' holds event {bad[0]} outside [0, {n_events}) "
                f"({len(bad)} such entries); was the split made for another store?"
            )
        uniq, counts = np.unique(idx, return_counts=True)
        if (counts > 1).any():
            raise DataError(f"{path}: '{key}' lists event {uniq[counts > 1][0]} more than once")
        clash = owner[idx] >= 0
        if clash.any():
            other = SPLIT_KEYS[owner[idx[clash][0]]]
            raise DataError(f"{path}: event {idx[clash][0]} is in both '{other}' and '{key}'")
        owner[idx] = j
        splits[key] = np.sort(idx)
    return splits
