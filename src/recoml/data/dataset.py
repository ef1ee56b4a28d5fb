"""EventDataset: a map-style dataset whose items are whole batches (a list of positions -> one HitBatch).

A batch is gathered with one vectorized read of the flat hit arrays (see ``EventStore.read``), which is
what makes tens of thousands of events/s possible on one CPU core; representations (images, graphs) are
built afterwards on the device. Use it with a batch sampler passed as ``sampler``::

    DataLoader(ds, sampler=TrainBatchSampler(len(ds), 256), batch_size=None, collate_fn=None)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from recoml.contracts.batch import HitBatch
from recoml.data.store import EventStore, gather_events, open_store
from recoml.errors import DataError

log = logging.getLogger(__name__)

HIT_PREFIX = "hit_"
DEFAULT_HIT_FIELDS = ("hit_pmt", "hit_charge", "hit_time")
DEFAULT_TARGET_FIELDS = ("labels",)


def _tensor_dtype(dtype: np.dtype) -> np.dtype:
    """Integers -> int64 (indices, labels), floats -> float32, bool stays."""
    if dtype.kind in "iu":
        return np.dtype(np.int64)
    if dtype.kind == "f":
        return np.dtype(np.float32)
    if dtype.kind == "b":
        return np.dtype(bool)
    raise TypeError(dtype)


def _to_tensor(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(arr, dtype=_tensor_dtype(arr.dtype)))


def _packed_tensors(arrays: list[np.ndarray], into: torch.Tensor | None = None) -> list[torch.Tensor]:
    """Tensors (converted dtypes) that are views of one buffer: ``into`` (uint8) when they fit, else a
    new one.

    A DataLoader worker then moves one shared-memory segment per batch instead of one per field, which
    about doubles the batches/s that cross the worker queue (or none: ``into`` is a shared output slot).
    """
    dtypes = [_tensor_dtype(a.dtype) for a in arrays]
    starts, total = [], 0
    for a, dt in zip(arrays, dtypes):
        starts.append(total)
        total += -(-a.size * dt.itemsize // 8) * 8  # 8-byte aligned
    buf = into if into is not None and total <= len(into) else torch.empty(total, dtype=torch.uint8)
    out = []
    for a, dt, s in zip(arrays, dtypes, starts):
        t = buf[s : s + a.size * dt.itemsize].view(torch.from_numpy(np.empty(0, dt)).dtype).view(a.shape)
        t.numpy()[...] = a
        out.append(t)
    return out


class EventDataset(Dataset):
    """Events ``indices`` of a store; ``ds[list_of_positions]`` is a :class:`HitBatch`.

    Position ``i`` is store row ``indices[i]`` (``event_index`` of the batch). Hits are keyed without the
    ``hit_`` prefix (``pmt``, ``charge``, ...), targets by their store name. Integer arrays become int64
    tensors, floats float32. ``in_memory=True`` reads the selected events once (small data sets); otherwise
    every batch is read lazily, and each DataLoader worker reopens the file.

    ``worker_transform`` (set by ``EventDataModule.build_in_workers``) is applied to each batch inside
    DataLoader workers only (the main process's reads, e.g. the statistics sample, stay raw HitBatches).
    """

    #: Applied to every batch read in a DataLoader worker (None: batches leave the worker as read).
    worker_transform: Callable[[HitBatch], HitBatch] | None = None

    def __init__(
        self,
        path: str | os.PathLike | EventStore,
        indices: Sequence[int] | np.ndarray | None = None,
        hit_fields: Sequence[str] = DEFAULT_HIT_FIELDS,
        target_fields: Sequence[str] = DEFAULT_TARGET_FIELDS,
        in_memory: bool = False,
    ) -> None:
        self.store = open_store(path)
        self.path = self.store.path
        where = str(self.path)
        if "hits" not in self.store.object_types:
            self.store.require(["event_hits_index"])
        present_hits = self.store.object_types["hits"]
        self.hit_fields = [self._hit_name(f, present_hits) for f in hit_fields]
        self.target_fields = list(target_fields)
        for name in self.target_fields:
            if name not in self.store.event_fields:
                raise DataError(
                    f"{where}: target field '{name}' not found; "
                    f"per-event fields present: {self.store.event_fields}"
                )
        for name in [*self.hit_fields, *self.target_fields]:
            kind = self.store.dtype(name).kind
            if kind not in "iufb":
                raise DataError(f"{where}: field '{name}' has dtype {self.store.dtype(name)}, not a number")
        n = self.store.n_events
        if indices is None:
            self.indices = np.arange(n, dtype=np.int64)
        else:
            self.indices = np.asarray(indices, dtype=np.int64).reshape(-1)
            bad = self.indices[(self.indices < 0) | (self.indices >= n)]
            if len(bad):
                raise DataError(f"{where}: event index {bad[0]} outside [0, {n}) ({len(bad)} such indices)")
        self.in_memory = in_memory
        self._mem: tuple[dict[str, np.ndarray], np.ndarray, dict[str, np.ndarray]] | None = None
        if in_memory:
            flat, offsets, events = self.store.read(self.indices, self.hit_fields, self.target_fields)
            conv = {k: v.astype(_tensor_dtype(v.dtype), copy=False) for k, v in flat.items()}
            ev = {k: v.astype(_tensor_dtype(v.dtype), copy=False) for k, v in events.items()}
            self._mem = (conv, offsets, ev)
            log.info("%s: %d events loaded in memory", where, len(self.indices))

    def _hit_name(self, name: str, present: list[str]) -> str:
        if name in present:
            return name
        if HIT_PREFIX + name in present:  # "pmt" for "hit_pmt"
            return HIT_PREFIX + name
        raise DataError(f"{self.path}: hit field '{name}' not found; hit fields present: {present}")

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int | Sequence[int] | np.ndarray | torch.Tensor) -> HitBatch:
        return self.read_batch(item)

    def read_batch(
        self, item: int | Sequence[int] | np.ndarray | torch.Tensor, into: torch.Tensor | None = None
    ) -> HitBatch:
        """``self[item]``; in a DataLoader worker its tensors are views of ``into`` (uint8, a shared
        output slot) when they fit, else of one new buffer, and ``worker_transform`` is applied."""
        pos = np.asarray(item, dtype=np.int64).reshape(-1)
        if len(pos) and (pos.min() < -len(self) or pos.max() >= len(self)):
            raise IndexError(f"position out of range for a dataset of {len(self)} events")
        pos = np.where(pos < 0, pos + len(self), pos)
        rows = self.indices[pos]
        if self._mem is not None:
            arrays, bounds, targets = self._mem
            flat, offsets = gather_events(arrays, bounds, pos)
            events = {k: v[pos] for k, v in targets.items()}
        else:
            flat, offsets, events = self.store.read(rows, self.hit_fields, self.target_fields)
        hit_keys = [k[len(HIT_PREFIX) :] if k.startswith(HIT_PREFIX) else k for k in flat]
        columns = [*flat.values(), *events.values(), offsets, rows]
        if get_worker_info() is not None:
            tensors = _packed_tensors(columns, into)
        else:
            tensors = [_to_tensor(a) for a in columns]
        nh, ne = len(flat), len(events)
        batch = HitBatch(
            hits=dict(zip(hit_keys, tensors[:nh])),
            offsets=tensors[nh + ne],
            targets=dict(zip(events, tensors[nh : nh + ne])),
            event_index=tensors[nh + ne + 1],
        )
        if self.worker_transform is not None and get_worker_info() is not None:
            batch = self.worker_transform(batch)
        return batch
