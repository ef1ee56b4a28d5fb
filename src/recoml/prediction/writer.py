"""Stream predictions to disk: one store per rank while predicting, merged by rank zero at the end.

Memory does not grow with the number of events: every batch is appended to this rank's
:class:`~recoml.data.store.StoreWriter` (chunked temporary file, made contiguous on close). After the
last batch every rank closes its file, all ranks meet at a barrier, and rank zero merges the rank files
block by block, sorted by ``event_index``, into the final file, which appears under its name only when
complete. Every event must occur exactly once across ranks (recoml's evaluation sampler guarantees it;
the merge checks it).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import h5py
import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter

from recoml.contracts.batch import HitBatch
from recoml.contracts.detector import Detector
from recoml.contracts.task import Task
from recoml.data.store import EventStore, StoreWriter, gather_events, open_store
from recoml.data.store_hdf5 import write_attrs
from recoml.data.validate import index_name
from recoml.errors import DataError
from recoml.io.atomic import atomic_output, remove_path
from recoml.prediction.schema import HIT, PRED, TRUE, aux_truth, field_name, units_of

log = logging.getLogger(__name__)

#: Events per block when merging rank files (bounds the merge's memory).
MERGE_BLOCK = 1 << 16


def batch_chunk(
    prediction: Mapping[str, torch.Tensor],
    batch: HitBatch,
    task: Task,
    detector: Detector,
) -> dict[str, np.ndarray]:
    """One batch of :meth:`RecoModule.predict_step` output (+ the batch's targets) as store arrays: the
    task's own layout when it has one (e.g. edges), else per event (and per hit for node-level tasks)
    with the generic and the detector's auxiliary truth."""
    own = task.prediction_chunk(prediction, batch)
    if own is not None:
        return own
    node_level = task.node_level

    def host(t: torch.Tensor) -> np.ndarray:
        t = t.detach()
        return (t.float() if t.is_floating_point() else t).cpu().numpy()

    chunk: dict[str, np.ndarray] = {"event_index": host(prediction["event_index"]).astype(np.int64)}
    for key, value in prediction.items():
        if not key.startswith(("pred/", "true/")):
            continue
        name = field_name(key)
        chunk[HIT + name if node_level else name] = host(value)
    if "ood_score" in prediction:
        chunk["ood_score"] = host(prediction["ood_score"]).astype(np.float32)
    if node_level:
        chunk["event_hits_index"] = host(prediction["offsets"])[:-1].astype(np.int64)
    chunk |= aux_truth(batch.targets, detector)
    return chunk


class PredictionWriter(BasePredictionWriter):
    """Lightning callback writing ``path`` (HDF5) from every rank's predicted batches.

    ``attrs`` become file attributes; ``dataset_attrs`` (``{field: {key: value}}``) are set on single
    datasets (e.g. the class names of ``pred_probabilities``). ``object_types``: the per-object arrays every
    batch holds (default ``hits`` for node-level tasks, none otherwise; edge tasks: ``hits``, ``edges``).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        task: Task,
        detector: Detector,
        attrs: Mapping[str, Any] | None = None,
        dataset_attrs: Mapping[str, Mapping[str, Any]] | None = None,
        overwrite: bool = False,
        object_types: Sequence[str] | None = None,
    ) -> None:
        super().__init__(write_interval="batch")
        self.path = Path(path)
        self.task, self.detector = task, detector
        self.object_types = (
            tuple(object_types) if object_types is not None else (("hits",) if task.node_level else ())
        )
        self.attrs = dict(attrs or {})
        self.dataset_attrs = {k: dict(v) for k, v in (dataset_attrs or {}).items()}
        self.overwrite = overwrite
        self._writer: StoreWriter | None = None
        self._rank_path: Path | None = None
        self.n_events = 0

    def rank_path(self, rank: int) -> Path:
        return self.path.with_name(f".{self.path.stem}.rank{rank}.h5")

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "predict":
            return
        self._rank_path = self.rank_path(trainer.global_rank)
        self._writer = StoreWriter(
            self._rank_path,
            overwrite=True,
            object_types=self.object_types,
            attrs={"rank": trainer.global_rank},
        )
        self.n_events = 0

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        assert self._writer is not None, "PredictionWriter.setup was not called for stage 'predict'"
        chunk = batch_chunk(prediction, batch, self.task, self.detector)
        self._writer.append(chunk)
        self.n_events += len(chunk["event_index"])

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        assert self._writer is not None and self._rank_path is not None
        self._writer.close()
        self._writer = None
        trainer.strategy.barrier("recoml_predictions_written")
        # Only rank zero merges; the others are done (no barrier after it: if the merge fails, rank zero
        # raises and Lightning stops the other processes instead of leaving them waiting).
        if trainer.is_global_zero:
            ranks = [self.rank_path(r) for r in range(trainer.world_size)]
            merge_rank_files(ranks, self.path, self.attrs, self.dataset_attrs, overwrite=self.overwrite)

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        if self._writer is not None:
            self._writer.abort()
            self._writer = None
        if self._rank_path is not None:
            remove_path(self._rank_path)


def _field_attrs(name: str, extra: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    units = units_of(name)
    if units:
        out["units"] = units
    base = name.removeprefix(HIT)
    out |= dict(extra.get(name, extra.get(base, {})))
    return out


def merge_rank_files(
    rank_files: Sequence[Path],
    path: Path,
    attrs: Mapping[str, Any],
    dataset_attrs: Mapping[str, Mapping[str, Any]],
    overwrite: bool = False,
    block: int = MERGE_BLOCK,
) -> Path:
    """Merge per-rank stores into ``path``, rows sorted by ``event_index``; removes the rank files.

    Raises DataError if an event occurs more than once. The result is written under a temporary name,
    given its attributes, then renamed to ``path``.
    """
    stores = [open_store(p) for p in rank_files if p.exists()]
    missing = [str(p) for p in rank_files if not p.exists()]
    if missing:
        raise DataError(f"prediction files of ranks {missing} are missing; a rank failed before writing")
    stores = [s for s in stores if s.n_events]
    try:
        with atomic_output(path, overwrite=overwrite) as tmp:
            index = [np.asarray(s.array("event_index"), dtype=np.int64) for s in stores]
            all_index = np.concatenate(index) if index else np.zeros(0, np.int64)
            which = np.concatenate([np.full(len(x), r) for r, x in enumerate(index)]) if index else all_index
            local = np.concatenate([np.arange(len(x)) for x in index]) if index else all_index
            order = np.argsort(all_index, kind="stable")
            sorted_index = all_index[order]
            dup = np.flatnonzero(sorted_index[1:] == sorted_index[:-1])
            if len(dup):
                first = sorted_index[dup[0]]
                raise DataError(
                    f"{path}: event {first} was predicted {np.sum(sorted_index == first)} times "
                    f"({len(dup)} duplicates across ranks); evaluation shards must not be padded"
                )
            objects = {t: list(f) for t, f in stores[0].object_types.items()} if stores else {}
            event_fields = list(stores[0].event_fields) if stores else []
            with StoreWriter(tmp, overwrite=True, object_types=tuple(objects)) as writer:
                for start in range(0, len(order), block):
                    sel = order[start : start + block]
                    writer.append(_gather_block(stores, which[sel], local[sel], objects, event_fields))
            _finish(tmp, {**attrs, "n_events": len(order)}, dataset_attrs)
    finally:
        for s in stores:
            s.close()
    for p in rank_files:
        remove_path(p)
    log.info("wrote %s (%d events from %d rank file(s))", path, len(order), len(rank_files))
    return path


def _read_rows(
    store: EventStore, rows: np.ndarray, objects: Mapping[str, Sequence[str]], event_fields: Sequence[str]
) -> tuple[dict[str, tuple[dict[str, np.ndarray], np.ndarray]], dict[str, np.ndarray]]:
    """Rows of a rank file: ``({object type: (flat fields, offsets)}, per-event fields)``."""
    flat = {t: store.read(rows, fields, (), object_type=t)[:2] for t, fields in objects.items()}
    return flat, {k: np.asarray(store.array(k)[rows]) for k in event_fields}


def _gather_block(
    stores: Sequence[EventStore],
    rank: np.ndarray,
    local: np.ndarray,
    objects: Mapping[str, Sequence[str]],
    event_fields: Sequence[str],
) -> dict[str, np.ndarray]:
    """Rows ``local`` of rank files ``rank`` (in this order) as one self-contained chunk."""
    parts = []
    position = np.empty(len(rank), dtype=np.int64)  # output row i = row position[i] of the concatenation
    offset = 0
    for r, store in enumerate(stores):
        mine = np.flatnonzero(rank == r)
        if not len(mine):
            continue
        parts.append(_read_rows(store, local[mine], objects, event_fields))
        position[mine] = offset + np.arange(len(mine))
        offset += len(mine)
    chunk = {k: np.concatenate([p[1][k] for p in parts])[position] for k in event_fields}
    for otype, fields in objects.items():
        flat = {k: np.concatenate([p[0][otype][0][k] for p in parts]) for k in fields}
        counts = np.concatenate([np.diff(p[0][otype][1]) for p in parts])
        bounds = np.zeros(len(counts) + 1, dtype=np.int64)
        np.cumsum(counts, out=bounds[1:])
        gathered, offsets = gather_events(flat, bounds, position)
        chunk |= gathered
        chunk[index_name(otype)] = offsets[:-1]
    return chunk


def _finish(tmp: Path, attrs: Mapping[str, Any], dataset_attrs: Mapping[str, Mapping[str, Any]]) -> None:
    """Set file attributes (provenance etc.) and per-dataset attributes (units, class names)."""

    with h5py.File(tmp, "r+") as f:
        write_attrs(f, dict(attrs))
        for name in f:
            if isinstance(f[name], h5py.Dataset) and name.startswith((PRED, TRUE, HIT, "aux_", "edge_")):
                for key, value in _field_attrs(name, dataset_attrs).items():
                    f[name].attrs[key] = value if isinstance(value, str | int | float) else json.dumps(value)
