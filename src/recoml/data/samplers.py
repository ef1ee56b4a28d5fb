"""Batch samplers that yield lists of dataset positions, sharded across DDP ranks.

``EventDataset`` reads a whole batch in one call, so the sampler (not the DataLoader) forms batches:
use ``DataLoader(ds, sampler=sampler, batch_size=None)`` and ``Trainer(use_distributed_sampler=False)``
(Lightning must not wrap these in a DistributedSampler: they shard themselves).

* :class:`TrainBatchSampler` shuffles with ``seed`` and the epoch (``set_epoch``, which Lightning calls),
  then shards like ``DistributedSampler``: padded by repeating events so every rank gets the same number
  of batches (DDP hangs otherwise).
* :class:`EvalBatchSampler` gives each rank a contiguous, unpadded shard, in order: every event is
  evaluated exactly once across ranks. Ranks may then run different numbers of batches, so don't
  sync per step (``self.log(..., sync_dist=True)`` in a validation step); torchmetrics objects, which
  sync at ``compute()``, are fine.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
from torch.utils.data import Sampler


def _check(n: int, batch_size: int, rank: int, world_size: int) -> None:
    if n < 0 or batch_size < 1:
        raise ValueError(f"need n >= 0 and batch_size >= 1, got n={n}, batch_size={batch_size}")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")


class TrainBatchSampler(Sampler[list[int]]):
    """Shuffled batches of this rank's share of ``range(n)``; equal batch counts on every rank.

    ``sort_within_batch`` sorts each batch's positions (which events share a batch stays random): reads
    of a sorted batch touch the file in order, and batch statistics don't depend on order.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        *,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        sort_within_batch: bool = True,
    ) -> None:
        _check(n, batch_size, rank, world_size)
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        self.drop_last, self.rank, self.world_size = drop_last, rank, world_size
        self.sort_within_batch = sort_within_batch
        self.epoch = 0
        # DistributedSampler's arithmetic: with drop_last the tail that cannot be shared evenly is dropped.
        if drop_last and n % world_size:
            self.num_samples = n // world_size
        else:
            self.num_samples = math.ceil(n / world_size)
        self.total_size = self.num_samples * world_size

    def set_epoch(self, epoch: int) -> None:
        """A new, deterministic order for every epoch (the same on every rank)."""
        self.epoch = int(epoch)

    def _order(self) -> np.ndarray:
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        else:
            order = np.arange(self.n)
        if self.total_size > self.n and self.n > 0:  # pad by repeating from the start
            order = np.resize(order, self.total_size)
        return order[: self.total_size]

    def __iter__(self) -> Iterator[list[int]]:
        mine = self._order()[self.rank : self.total_size : self.world_size]
        n_batches = len(self)
        for b in range(n_batches):
            batch = mine[b * self.batch_size : (b + 1) * self.batch_size]
            if self.sort_within_batch:
                batch = np.sort(batch)
            yield batch.tolist()

    def __len__(self) -> int:
        if self.drop_last:
            return self.num_samples // self.batch_size
        return math.ceil(self.num_samples / self.batch_size)


class EvalBatchSampler(Sampler[list[int]]):
    """In-order batches of a contiguous, unpadded shard: rank r of W gets np.array_split's part r."""

    def __init__(self, n: int, batch_size: int, *, rank: int = 0, world_size: int = 1) -> None:
        _check(n, batch_size, rank, world_size)
        self.n, self.batch_size, self.rank, self.world_size = n, batch_size, rank, world_size
        base, extra = divmod(n, world_size)
        self.start = rank * base + min(rank, extra)
        self.stop = self.start + base + (1 if rank < extra else 0)

    def set_epoch(self, epoch: int) -> None:
        """No-op (order is fixed); present so every sampler takes Lightning's call."""

    def __iter__(self) -> Iterator[list[int]]:
        for a in range(self.start, self.stop, self.batch_size):
            yield list(range(a, min(self.stop, a + self.batch_size)))

    def __len__(self) -> int:
        return math.ceil((self.stop - self.start) / self.batch_size)
