"""EventDataModule: splits + EventDatasets + batch samplers + DataLoaders for Lightning.

Use with ``Trainer(use_distributed_sampler=False)``: the samplers shard across DDP ranks themselves
(training: shuffled per epoch, padded to equal batch counts; evaluation: contiguous unpadded shards,
every event exactly once). Lightning's DistributedSampler would shard a second time.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.rank_zero import rank_zero_only
from torch import nn
from torch.utils.data import DataLoader

from recoml.contracts.batch import HitBatch
from recoml.contracts.representation import Representation
from recoml.data.allocator import init_worker
from recoml.data.dataset import DEFAULT_HIT_FIELDS, DEFAULT_TARGET_FIELDS, EventDataset
from recoml.data.samplers import EvalBatchSampler, TrainBatchSampler
from recoml.data.slots import (
    DEFAULT_HOLD,
    DEFAULT_TIMEOUT_S,
    SlotLoader,
    SlotPool,
    batches_per_message,
    pool_bytes,
    shared_memory_free,
)
from recoml.data.splits import load_splits, make_splits, save_splits, split_meta, splits_meta
from recoml.data.store import EventStore, open_store
from recoml.errors import ConfigError, DataError

log = logging.getLogger(__name__)

_SPLIT_OF = {"train": "train_idxs", "val": "val_idxs", "test": "test_idxs"}


def _info_rank_zero(msg: str, *args: object) -> None:
    if getattr(rank_zero_only, "rank", 0) == 0:
        log.info(msg, *args)


def default_split_path(path: str | os.PathLike) -> Path:
    """``<dir>/<stem>_splits.npz`` next to the data file."""
    path = Path(path)
    return path.with_name(f"{path.stem}_splits.npz")


#: Training events sampled to fit normalization and target statistics (``normalization_events``). With
#: ``N`` sampled events the standard error of a fitted mean is at most ``std / sqrt(N)`` (1% of the std for
#: 10,000 events, reached only if all hits of an event were identical; hits add independent information
#: otherwise) and the relative error of a fitted std about ``sqrt((kurtosis - 1) / (4 N))`` (0.7% for a
#: Gaussian feature), far below what input scaling needs. Memory is bounded by one batch, not by ``N``.
DEFAULT_STATISTICS_EVENTS: int = 10_000


@dataclass(frozen=True)
class StatisticsSample:
    """Fixed events of a dataset, read in batches anew on each iteration (so several fits can pass over it
    without holding it in memory)."""

    dataset: EventDataset
    positions: np.ndarray
    batch_size: int

    def __iter__(self) -> Iterator[HitBatch]:
        for start in range(0, len(self.positions), self.batch_size):
            yield self.dataset[self.positions[start : start + self.batch_size]]

    def __len__(self) -> int:
        return -(-len(self.positions) // self.batch_size)


@dataclass
class BuildInputs:
    """In a DataLoader worker: ``augment`` (training batches) then the first part of the model's input
    (``representation.prepare``) attached to the batch as ``batch.inputs``; ``slots``: the
    representation's output has a fixed size, so loaders let workers finish it into shared output slots
    (``recoml.data.slots``)."""

    representation: Representation
    augment: nn.Module | None = None
    slots: bool = False

    def __call__(self, batch: HitBatch) -> HitBatch:
        with torch.no_grad():
            if self.augment is not None:
                batch = self.augment.train()(batch)  # the worker's copy: always the training draw
            batch.inputs = self.representation.prepare(batch)
        return batch


class EventDataModule(L.LightningDataModule):
    """Loaders over one event store.

    ``split_path=None`` makes seeded splits (``fractions``, ``split_seed``, whole ``group_by`` groups such as
    ``root_files`` when given) and saves them next to the data as ``<stem>_splits.npz`` (reused while
    seed, fractions and grouping match). ``predict_split`` names the split ``predict_dataloader`` serves
    (``train``/``val``/``test``/``all``). ``persistent_workers=None`` means ``num_workers > 0``.
    ``held_batches``: how many batches a consumer of the loaders may hold at once when workers finish
    the inputs into shared output slots (:meth:`build_in_workers`); ``slot_timeout_s`` how long a worker
    waits for a slot before failing; ``batches_per_message`` how many consecutive batches a worker
    finishes per DataLoader item then (None: :func:`recoml.data.slots.batches_per_message`). An existing
    ``<stem>_splits.npz`` without recoml metadata (e.g. WatChMaL's) is used as it is.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        split_path: str | os.PathLike | None = None,
        batch_size: int = 256,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool | None = None,
        hit_fields: Sequence[str] = DEFAULT_HIT_FIELDS,
        target_fields: Sequence[str] = DEFAULT_TARGET_FIELDS,
        in_memory: bool = False,
        split_seed: int = 0,
        fractions: Sequence[float] = (0.8, 0.1, 0.1),
        group_by: str | None = None,
        drop_last: bool = False,
        predict_split: str = "test",
        prefetch_factor: int | None = None,
        held_batches: int = DEFAULT_HOLD,
        slot_timeout_s: float = DEFAULT_TIMEOUT_S,
        batches_per_message: int | None = None,
    ) -> None:
        super().__init__()
        # In checkpoints (reproducibility) but not logged: keys like `seed` may clash with the model's.
        self.save_hyperparameters(logger=False)
        self.path = Path(path)
        self.split_path = Path(split_path) if split_path is not None else None
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.num_workers = int(num_workers)
        self.pin_memory = bool(pin_memory)
        self.persistent_workers = (
            self.num_workers > 0 if persistent_workers is None else bool(persistent_workers)
        )
        self.hit_fields = tuple(hit_fields)
        self.target_fields = tuple(target_fields)
        self.in_memory = bool(in_memory)
        self.seed = int(split_seed)
        self.fractions = tuple(float(f) for f in fractions)
        self.group_by = group_by
        self.drop_last = bool(drop_last)
        if predict_split not in (*_SPLIT_OF, "all"):
            raise ConfigError(f"predict_split must be one of train, val, test, all; got '{predict_split}'")
        self.predict_split = predict_split
        self.prefetch_factor = prefetch_factor
        self.held_batches = int(held_batches)
        self.slot_timeout_s = float(slot_timeout_s)
        if batches_per_message is not None and int(batches_per_message) < 1:
            raise ConfigError(f"batches_per_message must be >= 1 or null (automatic): {batches_per_message}")
        self.batches_per_message = None if batches_per_message is None else int(batches_per_message)
        self.store: EventStore | None = None
        self.splits: dict[str, np.ndarray] | None = None
        self._datasets: dict[str, EventDataset] = {}
        self._worker_builds: dict[str, BuildInputs] = {}

    # -- setup ----------------------------------------------------------------------------------------

    def setup(self, stage: str | None = None) -> None:
        """Open the store (structural checks) and load or make the splits; datasets are built on demand."""
        if self.store is None:
            self.store = open_store(self.path)
        if self.splits is None:
            self.splits = self._load_or_make_splits(self.store)

    def _load_or_make_splits(self, store: EventStore) -> dict[str, np.ndarray]:
        if self.split_path is not None:
            splits = load_splits(self.split_path, store.n_events)
            _info_rank_zero("using splits %s", self.split_path)
            return splits
        meta = splits_meta(store.n_events, self.fractions, self.seed, self.group_by)
        target = default_split_path(self.path)
        if target.is_file():
            found = split_meta(target)
            if found == meta:
                _info_rank_zero("reusing splits %s", target)
                return load_splits(target, store.n_events)
            if not found:  # written elsewhere (simulation, WatChMaL): use it as it is
                _info_rank_zero(
                    "using splits %s as found (no recoml metadata: DataModule fractions/seed not applied)",
                    target,
                )
                return load_splits(target, store.n_events)
            if self._rank_world()[0] == 0:
                log.warning("splits %s were made with %s; remaking them with %s", target, found, meta)
        groups = store.array(self.group_by) if self.group_by else None
        # Deterministic: every rank computes the same splits, only rank zero writes them.
        splits = make_splits(store.n_events, self.fractions, self.seed, groups=groups)
        if self._rank_world()[0] == 0:
            try:
                save_splits(target, splits, meta=meta)
                log.info("made splits %s (fractions %s, seed %d)", target, list(self.fractions), self.seed)
            except OSError as exc:
                log.warning("could not save splits next to the data (%s); using them in memory only", exc)
        return splits

    def _rank_world(self) -> tuple[int, int]:
        """(rank, world size): from the attached Trainer, else torch.distributed, else (0, 1)."""
        trainer = self.trainer
        if trainer is not None:
            world = int(trainer.world_size)
            connector = getattr(trainer, "_accelerator_connector", None)
            if world > 1 and getattr(connector, "use_distributed_sampler", False):
                raise ConfigError(
                    "EventDataModule shards batches across ranks itself: build the Trainer with "
                    "use_distributed_sampler=False"
                )
            return int(trainer.global_rank), world
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def split_indices(self, split: str) -> np.ndarray:
        """Store rows of ``split`` (``train``/``val``/``test``/``all``); DataError when it is empty."""
        self.setup()
        assert self.splits is not None and self.store is not None
        if split == "all":
            idx = np.arange(self.store.n_events, dtype=np.int64)
        else:
            idx = self.splits[_SPLIT_OF[split]]
        if len(idx) == 0:
            source = self.split_path or default_split_path(self.path)
            raise DataError(
                f"the '{split}' split of {self.path} is empty (splits {source}, "
                f"fractions {list(self.fractions)}); change the fractions or the split file"
            )
        return idx

    def dataset(self, split: str) -> EventDataset:
        if split not in self._datasets:
            self._datasets[split] = EventDataset(
                self.store if self.store is not None else self.path,
                indices=self.split_indices(split),
                hit_fields=self.hit_fields,
                target_fields=self.target_fields,
                in_memory=self.in_memory,
            )
            self._datasets[split].worker_transform = self._worker_builds.get(split)
        return self._datasets[split]

    def build_in_workers(self, representation: Representation, augment: nn.Module | None = None) -> bool:
        """Build the model's inputs in the DataLoader workers (training on a CPU: the training process is
        left the model step): ``augment`` then ``representation.prepare`` on training batches, ``prepare``
        alone on the others. Fixed-size outputs (images) are then finished in the workers too, into shared
        output slots allocated once per loader (``recoml.data.slots``: the training process only wraps a
        slot, so 2 workers make batches about twice as fast as one process); others are finished by the
        module (:meth:`RecoModule.inputs`). Refused (False, one log line) without workers, for builders
        that cannot hand their output over, and for builders with trainable parameters (a worker's copy
        would not follow the optimizer)."""
        why = ""
        if self.num_workers == 0:
            why = "no DataLoader workers"
        elif not representation.builds_in_workers:
            why = f"{type(representation).__name__} builds in the training process only"
        elif any(p.requires_grad for p in representation.parameters()):
            why = f"{type(representation).__name__} has trainable parameters"
        if why:
            _info_rank_zero("model inputs built in the training process (%s)", why)
            return False
        representation.warm_up()  # lookup tables built once here, shared by the forked workers
        slots = representation.new_output(1) is not None
        train, other = BuildInputs(representation, augment, slots), BuildInputs(representation, None, slots)
        self._worker_builds = {"train": train, "val": other, "test": other, "all": other}
        for split, ds in self._datasets.items():
            ds.worker_transform = self._worker_builds[split]
        _info_rank_zero(
            "model inputs built in the %d DataLoader workers%s",
            self.num_workers,
            " into shared output slots" if slots and self.persistent_workers else "",
        )
        return True

    def statistics_sample(self, max_events: int | None = DEFAULT_STATISTICS_EVENTS, seed: int = 0):
        """A bounded random sample of training events for fitting normalization and target statistics.

        Whole batches of consecutive training events drawn at random (cluster sampling: a batch reads a
        few slices of the memory-mapped store instead of touching pages all over it), unsharded and
        unaugmented (every rank fits the same numbers), read batch by batch each time it is iterated, so
        memory does not grow with the store. ``max_events=None`` takes the whole split.
        """
        ds = self.dataset("train")
        n, size = len(ds), self.eval_batch_size
        n_runs = -(-n // size)
        if max_events is None or max_events >= n:
            runs = np.arange(n_runs)
        else:
            chosen = np.random.default_rng(seed).choice(
                n_runs, max(1, -(-int(max_events) // size)), replace=False
            )
            runs = np.sort(chosen)
        positions = (runs[:, None] * size + np.arange(size)).reshape(-1)
        positions = positions[positions < n]
        _info_rank_zero("fitting statistics on %d of %d training events", len(positions), n)
        return StatisticsSample(ds, positions, size)

    # -- loaders --------------------------------------------------------------------------------------

    def _loader(
        self, split: str, sampler: torch.utils.data.Sampler, batch_size: int, slots: bool = True
    ) -> DataLoader:
        """The split's DataLoader; a :class:`SlotLoader` (workers finish the inputs into shared output
        slots allocated here, once per loader) when the inputs are built in persistent workers and the
        representation's output has a fixed size (images). Not for prediction (``slots=False``): Lightning
        rebuilds prediction loaders with its own sampler."""
        ds = self.dataset(split)
        extra: dict[str, Any] = {}
        if self.num_workers > 0:
            extra["persistent_workers"] = self.persistent_workers
            extra["worker_init_fn"] = init_worker
            if self.prefetch_factor is not None:
                extra["prefetch_factor"] = self.prefetch_factor
        kwargs = {"batch_size": None, "num_workers": self.num_workers, "pin_memory": self.pin_memory, **extra}
        build = self._worker_builds.get(split)
        if slots and build is not None and self.persistent_workers and build.slots:
            groups = [self.batches_per_message or batches_per_message(build.representation, batch_size)]
            if self.batches_per_message is None and groups[0] > 1:
                groups.append(1)  # batches one per item before none in slots
            free = shared_memory_free()
            for group in groups:
                # Slots: the workers' prefetched items and the one received and not yet handed over (each
                # `group` batches), and the batches the consumer holds.
                n_slots = group * (self.num_workers * (self.prefetch_factor or 2) + 1) + self.held_batches
                need = pool_bytes(build.representation, batch_size, n_slots)
                if free is None or need < free:
                    pool = SlotPool(
                        build.representation, batch_size, n_slots, self.held_batches, self.slot_timeout_s
                    )
                    return SlotLoader(pool, ds, sampler, group, **kwargs)
            assert free is not None  # an unknown size lets every pool through
            log.warning(
                "%s loader: %d output slots need %.0f MB of shared memory, %.0f MB free in /dev/shm; the "
                "training process paints the images instead (slower; enlarge /dev/shm, e.g. docker "
                "--shm-size, or lower the batch size)",
                split,
                n_slots,
                need / 1e6,
                free / 1e6,
            )
        return DataLoader(ds, sampler=sampler, **kwargs)

    def _eval_loader(self, split: str, slots: bool = True) -> DataLoader:
        ds = self.dataset(split)
        rank, world = self._rank_world()
        sampler = EvalBatchSampler(len(ds), self.eval_batch_size, rank=rank, world_size=world)
        return self._loader(split, sampler, self.eval_batch_size, slots)

    def train_dataloader(self) -> DataLoader:
        ds = self.dataset("train")
        rank, world = self._rank_world()
        sampler = TrainBatchSampler(
            len(ds), self.batch_size, seed=self.seed, drop_last=self.drop_last, rank=rank, world_size=world
        )
        if len(sampler) == 0:
            raise DataError(
                f"the 'train' split of {self.path} gives no batch of {self.batch_size} events per rank "
                f"({len(ds)} events, {world} rank(s), drop_last={self.drop_last})"
            )
        return self._loader("train", sampler, self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader(self.predict_split, slots=False)

    def teardown(self, stage: str | None = None) -> None:
        if self.store is not None:
            self.store.close()
