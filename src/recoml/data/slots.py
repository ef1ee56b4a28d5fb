"""Output slots: DataLoader workers finish model inputs into shared memory allocated once.

Why: a worker's output reaches the training process through a fresh shared-memory segment per batch
(the worker creates and page-faults it, the training process maps it again), which on a CPU costs more
than building the batch; and inputs handed over as hits (``ImageHits``) leave the painting to the
training process, which then stays the bottleneck whatever the number of workers. With a pool of slots
allocated before the workers start, a worker writes the finished inputs, and the batch's hits and targets,
into a slot and hands over only its number and layout (:class:`SlotRef`); the training process wraps the
slot as views: no copy, no fresh pages. (Hits that do not fit the slot's hit area travel the usual way.)

The protocol needs no lock (each field has one writer):

* the training process gives every batch a sequence number and a slot when the sampler hands the batch
  to a worker (:class:`SlotSampler`), taking a slot no batch holds, and writes the batch's sequence
  number into ``ticket[slot]``: only that batch may write the slot;
* the worker waits for its ticket (:class:`SlotTimeoutError` after ``timeout_s``, never writing a slot
  in use), reads the batch into the slot's hit area, clears what the slot's previous batch painted,
  finishes the inputs into it (``Representation.finish_into``, the code that paints in-process batches
  too) and records what it painted;
* the training process takes the batch (:class:`SlotLoader`): inputs and hits are views of the slot
  (targets and event rows are copied: metrics may keep them), which stays held until ``hold`` more
  batches have been taken (the consumer may keep ``hold`` batches at once: the current one, Lightning's
  prefetched one, ...), then it is free for the next dispatch;
* a new pass over the loader (an epoch) frees the slots of batches dispatched but never taken (an
  abandoned pass, e.g. Lightning's sanity check): the DataLoader's persistent workers have finished them
  before the next pass starts, so slots need persistent workers.

Cheap batches (WCTE: 8 ms for 512 events) travel ``group`` at a time: the sampler hands a worker
``group`` consecutive batches in one DataLoader item, the worker finishes them into ``group`` slots and
returns their :class:`SlotRef` in one message, and the loader yields them one by one, in order (the
DataLoader's per-item cost, in both processes, is then shared by ``group`` batches).

The DataLoader hands an item to a worker before it hands the item just received to the consumer, so with
``group * (num_workers * prefetch_factor + 1) + hold`` slots a free one always exists at dispatch; with
fewer a batch is promised the slot to be released soonest and its worker waits for it.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import logging
import mmap
import os
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from recoml.contracts.batch import HitBatch
from recoml.contracts.representation import Representation
from recoml.data.dataset import EventDataset
from recoml.errors import DataError

log = logging.getLogger(__name__)

#: Batches the consumer may hold at once beyond those in flight (Lightning's fetcher keeps one batch ahead
#: of the step: 2 are enough for it; 3 leaves one for a callback that keeps the last batch).
DEFAULT_HOLD: int = 3
#: How long a worker waits for its slot before giving up (the consumer must be holding too many batches).
DEFAULT_TIMEOUT_S: float = 120.0
#: ``written`` capacity per slot as a fraction of its elements: a batch writing more than that is
#: cleared whole by the next one. Clearing by index touches a cache line per index, in random order: a WCTE
#: batch writes 1/28 of its elements (300 of 4,256 pixels per quantity per event, most lines) and the whole
#: clear fills a cold slot faster (7.1 vs 7.9 ms per batch of 512); an HK batch writes 1/80 and the index
#: clear is faster (14.7 vs 16.4 ms per batch of 256).
_WRITTEN_FRACTION = 32
#: Bytes of each slot's hit area as a fraction of its output's bytes (at least ``_MIN_HIT_BYTES``): a
#: WCTE batch of 512 x 300 hits is 2.4 MB next to 17 MB of images, an HK one of 256 x 1,000 is 4 MB
#: next to 82 MB.
_HIT_FRACTION = 4
_MIN_HIT_BYTES = 1 << 20
_MADV_POPULATE_WRITE = 23  # linux/mman.h, Linux >= 5.14
#: Outputs smaller than this travel several batches per DataLoader item (:func:`batches_per_message`):
#: 3 WCTE batches of 512 (17 MB each); larger ones travel in pairs (HK batches of 256, 82 MB each).
MESSAGE_BYTES = 64 << 20
MIN_BATCHES_PER_MESSAGE = 2
MAX_BATCHES_PER_MESSAGE = 4


def _hit_bytes(output_bytes: int) -> int:
    return max(_MIN_HIT_BYTES, output_bytes // _HIT_FRACTION) // 64 * 64


def _batch_output(representation: Representation, batch_size: int) -> tuple[int, int] | None:
    """Elements and bytes of one batch's output; None when the output has no fixed size."""
    one = representation.new_output(1)
    if one is None:
        return None
    return one.numel() * batch_size, one.numel() * one.element_size() * batch_size


def pool_bytes(representation: Representation, batch_size: int, n_slots: int) -> int:
    """Shared memory a :class:`SlotPool` of these arguments takes (0: the output has no fixed size)."""
    sizes = _batch_output(representation, batch_size)
    if sizes is None:
        return 0
    elements, output = sizes
    written = elements // _WRITTEN_FRACTION * 8
    return n_slots * (output + _hit_bytes(output) + written)


def batches_per_message(representation: Representation, batch_size: int) -> int:
    """Consecutive batches a worker finishes per DataLoader item: enough for ``MESSAGE_BYTES`` of output,
    from ``MIN_BATCHES_PER_MESSAGE`` to ``MAX_BATCHES_PER_MESSAGE``, so that batches share the per-item
    cost of the DataLoader's queues in both processes (per WCTE batch of 512, the training process spent
    0.8 ms sent alone, 0.45 ms in pairs, 0.28 ms in fours, against 8 ms to build it; HK batches of 256 in
    pairs: 2 workers went from 1.64x to 1.71x one process, see docs/benchmarks.md); 1 for outputs of no
    fixed size (they use no slots)."""
    sizes = _batch_output(representation, batch_size)
    if sizes is None:
        return 1
    fitting = MESSAGE_BYTES // max(sizes[1], 1)
    return max(MIN_BATCHES_PER_MESSAGE, min(MAX_BATCHES_PER_MESSAGE, fitting))


def shared_memory_free(path: str = "/dev/shm") -> int | None:
    """Bytes free where POSIX shared memory lives (containers often give it 64 MB); None if unknown."""
    try:
        stat = os.statvfs(path)
    except (OSError, AttributeError):
        return None
    return stat.f_bavail * stat.f_frsize


class SlotTimeoutError(DataError):
    """A DataLoader worker found no free output slot in time."""


@dataclass(frozen=True)
class SlotTask:
    """What the sampler hands a worker: the batch's dataset positions, sequence number and slot."""

    positions: np.ndarray  # int64 (pickled as one buffer, not as a list of ints)
    seq: int
    slot: int


#: Where one tensor of a batch lies in a slot's hit area: (field, key, byte offset, dtype, shape).
Placement = tuple[str, str, int, torch.dtype, tuple[int, ...]]


@dataclass(frozen=True)
class SlotRef:
    """What a worker hands over instead of the inputs (and, with ``layout``, instead of the whole batch):
    the slot it finished them in, and where the batch's tensors lie in the slot's hit area."""

    seq: int
    slot: int
    n_events: int
    layout: tuple[Placement, ...] | None = None


class SlotPool:
    """``n_slots`` output tensors of ``representation.new_output(batch_size)`` in shared memory, the
    bookkeeping of who may write which (training process) and the painting into them (workers)."""

    def __init__(
        self,
        representation: Representation,
        batch_size: int,
        n_slots: int,
        hold: int = DEFAULT_HOLD,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        blank = representation.new_output(batch_size)
        if blank is None:
            raise ValueError(f"{type(representation).__name__} has no fixed-size output to put in slots")
        if n_slots < 1 or hold < 1:
            raise ValueError(f"need n_slots >= 1 and hold >= 1, got {n_slots} and {hold}")
        self.representation = representation
        self.batch_size, self.hold, self.timeout_s = int(batch_size), int(hold), float(timeout_s)
        self.outputs = [blank.clone().share_memory_() for _ in range(n_slots)]
        hit_bytes = _hit_bytes(blank.numel() * blank.element_size())
        self.hit_area = torch.zeros(n_slots, hit_bytes, dtype=torch.uint8).share_memory_()
        capacity = max(1, blank.numel() // _WRITTEN_FRACTION)
        # What each slot's last batch wrote (flat indices, ``representation.finish_into``'s record):
        # ``written_count[slot] = -1`` when it did not fit (the next batch clears the slot whole).
        self.written = torch.zeros(n_slots, capacity, dtype=torch.int64).share_memory_()
        self.written_count = torch.zeros(n_slots, dtype=torch.int64).share_memory_()
        # The sequence number of the batch allowed to write each slot (-1: none).
        self.ticket = torch.full((n_slots,), -1, dtype=torch.int64).share_memory_()
        self._mapped = False  # whether this process mapped the slots' pages (workers: at the first fill)
        # Training process only (copied into workers, unused there).
        self._next_seq = 0
        self._free: deque[int] = deque(range(n_slots))
        self._dispatched: dict[int, int] = {}  # seq -> slot, handed to a worker and not yet taken
        self._held: deque[tuple[int, int]] = deque()  # (seq, slot) taken by the consumer, oldest first
        self._waiting: dict[int, int] = {}  # slot -> seq promised it once it is released
        self.n_promised = 0  # batches that had to wait for a slot (0 in a pool of the full size)
        log.info(
            "%d output slots of %s and %.1f MB of hits (%.0f MB shared memory), batches held <= %d",
            n_slots,
            tuple(blank.shape),
            hit_bytes / 1e6,
            n_slots * (blank.numel() * blank.element_size() + hit_bytes) / 1e6,
            self.hold,
        )

    @property
    def n_slots(self) -> int:
        return len(self.outputs)

    # -- training process --------------------------------------------------------------------------

    def new_pass(self) -> None:
        """Free the slots of batches dispatched in an earlier pass and never taken."""
        for seq, slot in list(self._dispatched.items()):
            del self._dispatched[seq]
            if self._waiting.get(slot) == seq:  # promised a slot still held: the promise lapses
                del self._waiting[slot]
            else:
                self._release(slot)

    def assign(self) -> tuple[int, int]:
        """(sequence number, slot) of the next batch: a free slot, else the one to be released soonest
        (the oldest held, else the oldest in flight), which the worker then waits for."""
        seq, self._next_seq = self._next_seq, self._next_seq + 1
        if self._free:
            slot = self._free.popleft()
            self.ticket[slot] = seq
        else:
            soonest = [sl for _, sl in self._held] + list(self._dispatched.values())
            slot = next((sl for sl in soonest if sl not in self._waiting), -1)
            if slot < 0:
                raise SlotTimeoutError(
                    f"no output slot for batch {seq}: all {self.n_slots} are in flight and promised; the "
                    "pool needs more than num_workers * prefetch_factor slots"
                )
            self._waiting[slot] = seq
            self.n_promised += 1
        self._dispatched[seq] = slot
        return seq, slot

    def take(self, item: HitBatch | SlotRef) -> HitBatch:
        """The batch (rebuilt from the slot when the worker handed over only a :class:`SlotRef`) with its
        slot's view as ``inputs``; frees the slot taken ``hold`` batches ago."""
        if isinstance(item, SlotRef):
            ref, batch = item, self._batch_from_slot(item)
        elif isinstance(item.inputs, SlotRef):
            ref, batch = item.inputs, item
        else:
            return item
        if self._dispatched.get(ref.seq) != ref.slot:
            raise DataError(f"batch {ref.seq} in slot {ref.slot} was not handed out by this pool")
        del self._dispatched[ref.seq]
        self._held.append((ref.seq, ref.slot))
        while len(self._held) > self.hold:
            self._release(self._held.popleft()[1])
        batch.inputs = self.outputs[ref.slot][: ref.n_events]
        return batch

    def _batch_from_slot(self, ref: SlotRef) -> HitBatch:
        """Views of the slot's hit area; targets and event rows copied (metrics may keep them)."""
        assert ref.layout is not None
        storage, base = self.hit_area.untyped_storage(), ref.slot * self.hit_area.shape[1]
        fields: dict[str, dict[str, torch.Tensor]] = {
            "hits": {},
            "targets": {},
            "offsets": {},
            "event_index": {},
        }
        for field, key, start, dtype, shape in ref.layout:
            # set_ on the storage: a view in one call (2.5x faster than slicing and viewing the area).
            offset = (base + start) // dtype.itemsize
            tensor = torch.empty(0, dtype=dtype).set_(storage, offset, shape, _contiguous_strides(shape))
            fields[field][key] = tensor if field in ("hits", "offsets") else tensor.clone()
        return HitBatch(
            hits=fields["hits"],
            offsets=fields["offsets"][""],
            targets=fields["targets"],
            event_index=fields["event_index"].get(""),
        )

    def _release(self, slot: int) -> None:
        waiting = self._waiting.pop(slot, None)
        if waiting is None:
            self.ticket[slot] = -1
            self._free.append(slot)
        else:
            self.ticket[slot] = waiting

    # -- DataLoader worker -----------------------------------------------------------------------------

    def fill(self, task: SlotTask, dataset: Any) -> HitBatch | SlotRef:
        """Worker side, once the task's ticket allows: read the batch into the slot's hit area
        (``dataset.read_batch``, whose worker transform prepares the inputs) and finish its inputs into
        the slot; a :class:`SlotRef` with the batch's layout, or the batch with a :class:`SlotRef` as
        ``inputs`` when its hits did not fit."""
        if not self._mapped:  # this worker's first batch: map every slot now, not page by page later
            for tensor in (*self.outputs, self.hit_area):
                _populate(tensor)
            self._mapped = True
        self._wait_for(task)
        area = self.hit_area[task.slot]
        batch = dataset.read_batch(task.positions, area)
        if batch.inputs is None:
            raise DataError("output slots: the dataset's worker transform prepared no inputs")
        if batch.n_events > self.batch_size:
            raise DataError(f"a batch of {batch.n_events} events does not fit slots of {self.batch_size}")
        count = int(self.written_count[task.slot])
        previous = None if count < 0 else self.written[task.slot, :count]
        _, written = self.representation.finish_into(batch.inputs, self.outputs[task.slot], previous)
        if len(written) <= self.written.shape[1]:
            self.written[task.slot, : len(written)] = written
            self.written_count[task.slot] = len(written)
        else:
            self.written_count[task.slot] = -1
        layout = _layout(batch, area)
        ref = SlotRef(task.seq, task.slot, batch.n_events, layout)
        if layout is not None:
            return ref
        batch = _detached(batch)  # hits beyond the slot's hit area: the usual shared-memory hand-over
        batch.inputs = ref
        return batch

    def _wait_for(self, task: SlotTask) -> None:
        deadline, pause = time.monotonic() + self.timeout_s, 1e-4
        while int(self.ticket[task.slot]) != task.seq:
            if time.monotonic() > deadline:
                raise SlotTimeoutError(
                    f"batch {task.seq} waited {self.timeout_s:.0f} s for output slot {task.slot} of "
                    f"{self.n_slots}: the consumer holds more than {self.hold} batches at once; release "
                    "them (or .clone() those kept) or raise the datamodule's held_batches"
                )
            time.sleep(pause)
            pause = min(2 * pause, 5e-3)


def _contiguous_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= size
    return tuple(reversed(strides))


def _populate(tensor: torch.Tensor) -> None:
    """Map the pages of ``tensor``'s shared storage into this process, writable, in one call (Linux
    ``MADV_POPULATE_WRITE``; contents unchanged): a forked worker otherwise takes one page fault per page
    at its first write (an HK slot is 20,000 pages). Elsewhere nothing happens (pages map on first use)."""
    storage = tensor.untyped_storage()
    start = storage.data_ptr() // mmap.PAGESIZE * mmap.PAGESIZE
    length = storage.data_ptr() + storage.nbytes() - start
    with contextlib.suppress(AttributeError, OSError):
        ctypes.CDLL(None, use_errno=True).madvise(
            ctypes.c_void_p(start), ctypes.c_size_t(length), _MADV_POPULATE_WRITE
        )


def _layout(batch: HitBatch, area: torch.Tensor) -> tuple[Placement, ...] | None:
    """Where each tensor of ``batch`` lies in ``area`` (a slot's hit area), copying there those that lie
    elsewhere (hits an augmentation remade) after those read into it; None when they do not fit."""
    tensors = [("hits", k, v) for k, v in batch.hits.items()]
    tensors += [("targets", k, v) for k, v in batch.targets.items()]
    tensors.append(("offsets", "", batch.offsets))
    if batch.event_index is not None:
        tensors.append(("event_index", "", batch.event_index))
    base, size = area.data_ptr(), area.shape[0]
    spans = []  # (field, key, tensor, bytes, start in the area or -1 when elsewhere)
    for field, key, t in tensors:
        nbytes, start = t.numel() * t.element_size(), t.data_ptr() - base
        inside = 0 <= start and start + nbytes <= size and t.is_contiguous()
        spans.append((field, key, t, nbytes, start if inside else -1))
    free = max((start + nbytes for *_, nbytes, start in spans if start >= 0), default=0)
    placements = []
    for field, key, t, nbytes, start in spans:
        if start < 0:
            start = -(-free // 8) * 8
            if start + nbytes > size:
                return None
            area[start : start + nbytes].view(t.dtype).view(t.shape).copy_(t)
            free = start + nbytes
        placements.append((field, key, start, t.dtype, tuple(t.shape)))
    return tuple(placements)


def _detached(batch: HitBatch) -> HitBatch:
    """``batch`` with copies of its tensors (none may point into a slot's hit area when it is pickled:
    that would hand the whole area over)."""
    return HitBatch(
        hits={k: v.clone() for k, v in batch.hits.items()},
        offsets=batch.offsets.clone(),
        targets={k: v.clone() for k, v in batch.targets.items()},
        event_index=None if batch.event_index is None else batch.event_index.clone(),
    )


class SlotSampler(Sampler[tuple[SlotTask, ...]]):
    """``sampler``'s batches as :class:`SlotTask`, ``group`` consecutive ones per DataLoader item (one
    message to a worker and one back for ``group`` batches); sequence numbers and slots are assigned at
    dispatch."""

    def __init__(self, sampler: Sampler, pool: SlotPool, group: int = 1) -> None:
        if group < 1:
            raise ValueError(f"need group >= 1, got {group}")
        self.sampler, self.pool, self.group = sampler, pool, int(group)

    def set_epoch(self, epoch: int) -> None:
        set_epoch = getattr(self.sampler, "set_epoch", None)
        if set_epoch is not None:
            set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[SlotTask, ...]]:
        # Runs at the pass's first dispatch, after persistent workers finished the previous pass.
        self.pool.new_pass()
        batches = iter(self.sampler)
        while chunk := list(itertools.islice(batches, self.group)):
            yield tuple(self._task(positions) for positions in chunk)

    def _task(self, positions: Any) -> SlotTask:
        seq, slot = self.pool.assign()
        return SlotTask(np.asarray(positions, dtype=np.int64), seq, slot)

    def __len__(self) -> int:
        return -(-len(self.sampler) // self.group)  # type: ignore[arg-type]


class SlotDataset(Dataset):
    """The batches of ``tasks`` read and finished into their slots (:meth:`SlotPool.fill`), in order."""

    def __init__(self, dataset: EventDataset, pool: SlotPool) -> None:
        self.dataset, self.pool = dataset, pool

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, tasks: tuple[SlotTask, ...]) -> list[HitBatch | SlotRef]:
        return [self.pool.fill(task, self.dataset) for task in tasks]


class SlotLoader(DataLoader):
    """A DataLoader over a :class:`SlotDataset` whose batches come out one by one, in the sampler's order,
    with their slot's view as ``inputs`` (the pool learns which batches the consumer took). A worker
    finishes ``group`` consecutive batches per DataLoader item; ``len`` counts batches."""

    def __init__(
        self, pool: SlotPool, dataset: EventDataset, sampler: Sampler, group: int = 1, **kwargs: Any
    ) -> None:
        if kwargs.get("num_workers", 0) < 1 or not kwargs.get("persistent_workers", False):
            raise ValueError("output slots need DataLoader workers that persist between passes")
        super().__init__(SlotDataset(dataset, pool), sampler=SlotSampler(sampler, pool, group), **kwargs)
        self.pool = pool

    def __iter__(self) -> Iterator[HitBatch]:  # type: ignore[override]
        for items in super().__iter__():
            for item in items:
                yield self.pool.take(item)

    def __len__(self) -> int:
        return len(self.sampler.sampler)  # type: ignore[attr-defined]
