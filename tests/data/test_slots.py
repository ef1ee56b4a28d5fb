"""Output slots (recoml.data.slots): DataLoader workers finish images into shared memory allocated once."""

from __future__ import annotations

from collections import deque
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from recoml.data import slots
from recoml.data.datamodule import EventDataModule
from recoml.data.dataset import EventDataset
from recoml.data.representations.graphs import GraphBuilder
from recoml.data.samplers import TrainBatchSampler
from recoml.data.slots import SlotLoader, SlotPool, SlotRef, SlotTask, SlotTimeoutError
from recoml.data.store import write_store
from recoml.families.water_cherenkov.augment import CylinderAugment
from recoml.families.water_cherenkov.images import ImageBuilder
from tests.data.test_representations import detector

N_EVENTS = 72


def write_hits(tmp_path: Path, seed: int = 4) -> Path:
    """WCTE events of 0 to 400 hits (every 7th empty), several hits per PMT: batches differ in events
    hit, hit count and pixels, so a stale pixel of an earlier batch in a reused slot would show."""
    det = detector("wcte")
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 400, N_EVENTS)
    counts[::7] = 0
    n = int(counts.sum())
    arrays = {
        "event_hits_index": np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64),
        "hit_pmt": rng.integers(0, det.n_pmts, n).astype(np.int32),
        "hit_charge": rng.exponential(2.0, n).astype(np.float32),
        "hit_time": rng.normal(900, 30, n).astype(np.float32),
        "labels": rng.integers(0, 3, N_EVENTS).astype(np.int32),
        "positions": rng.normal(0, 100, (N_EVENTS, 1, 3)).astype(np.float32),
    }
    return write_store(tmp_path / "store.h5", arrays)


@pytest.mark.parametrize("group", [1, 3])
@pytest.mark.parametrize("room", ["ample", "tight"])
def test_slot_reuse_never_leaks_one_batch_into_the_next(tmp_path, monkeypatch, room, group):
    """Over 3 epochs, the batches come in the sampler's order, none dropped or repeated, and each batch a
    worker finished into a reused slot equals the 0-worker build of the same events, while the consumer
    keeps its `held_batches - 1` earlier batches, which stay unchanged (no slot in use is overwritten).
    "tight": slots whose record of painted pixels and hit area are too small (full clears; hits handed
    over the usual way). group 3: workers finish 3 consecutive batches per DataLoader item (9 batches per
    epoch: the last item of a pass is full, the abandoned pass stops inside an item)."""
    if room == "tight":
        monkeypatch.setattr(slots, "_WRITTEN_FRACTION", 10**9)
        monkeypatch.setattr(slots, "_MIN_HIT_BYTES", 64)
        monkeypatch.setattr(slots, "_HIT_FRACTION", 10**9)
    det = detector("wcte")
    path = write_hits(tmp_path)
    builder = ImageBuilder(det, geometry_channels=True, reuse_output=True)  # "time" is a first-hit image
    hold = 3
    dm = EventDataModule(
        path,
        batch_size=8,
        num_workers=2,
        fractions=(1.0, 0.0, 0.0),
        held_batches=hold,
        target_fields=("labels", "positions"),
        batches_per_message=group,
    )
    assert dm.build_in_workers(builder)
    loader = dm.train_dataloader()
    assert isinstance(loader, SlotLoader)
    assert loader.pool.n_slots == group * (2 * 2 + 1) + hold
    assert len(loader) == N_EVENTS // 8
    rows_of = dm.dataset("train").indices
    reference = EventDataset(path, target_fields=("labels", "positions"))  # read here: the 0-worker path
    held: deque[tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]] = deque(maxlen=hold - 1)
    storages, n_batches = set(), 0
    for epoch in range(3):
        loader.sampler.set_epoch(epoch)
        order = TrainBatchSampler(N_EVENTS, 8, seed=0)
        order.set_epoch(epoch)
        expected_rows = [rows_of[positions] for positions in order]
        for i, batch in enumerate(loader):
            if epoch == 1 and i == 4:  # an abandoned pass: the next one gets its slots back
                break
            rows = batch.event_index
            assert rows.tolist() == expected_rows[i].tolist()  # in order, none dropped or repeated
            expected = ImageBuilder(det, geometry_channels=True)(reference[rows.numpy()])
            assert torch.equal(batch.inputs, expected)
            raw = reference[rows.numpy()]
            assert torch.equal(batch.offsets, raw.offsets)
            for name, hits in raw.hits.items():
                assert torch.equal(batch.hits[name], hits), name
            assert batch.targets.keys() == raw.targets.keys() == {"labels", "positions"}
            for name, target in raw.targets.items():  # (B,) int64 and (B, 1, 3) float32
                assert torch.equal(batch.targets[name], target), name
            for image, copy, hits in held:  # the consumer's earlier batches are intact
                assert torch.equal(image, copy)
                assert all(torch.equal(hits[k], v) for k, v in reference[hits["rows"].numpy()].hits.items())
            storages.add(batch.inputs.untyped_storage().data_ptr())
            held.append((batch.inputs, batch.inputs.clone(), {**batch.hits, "rows": rows.clone()}))
            n_batches += 1
        else:
            assert i == len(expected_rows) - 1
    assert n_batches == 2 * N_EVENTS // 8 + 4
    # Allocated once: every batch is a view of one of the pool's slots.
    assert storages <= {t.untyped_storage().data_ptr() for t in loader.pool.outputs}
    assert loader.pool.n_promised == 0  # the full-size pool always had a free slot
    if room == "tight":  # the fallback paths did run
        assert int(loader.pool.written_count.min()) == -1


def test_images_finished_in_workers_equal_those_built_here_for_the_same_augmentation(tmp_path):
    """Training batches augmented in the workers: the slot's images equal this process's build from the
    batch's (augmented) hits, which differ from the stored ones."""
    det = detector("wcte")
    path = write_hits(tmp_path, seed=8)
    dm = EventDataModule(path, batch_size=12, num_workers=2, fractions=(1.0, 0.0, 0.0))
    assert dm.build_in_workers(ImageBuilder(det, reuse_output=True), CylinderAugment(det, p=1.0))
    reference = EventDataset(path)
    moved = 0
    for batch in dm.train_dataloader():
        assert torch.equal(batch.inputs, ImageBuilder(det)(batch))
        moved += int((batch.hits["pmt"] != reference[batch.event_index.numpy()].hits["pmt"]).sum())
    assert moved > 0


def test_without_persistent_workers_images_are_painted_here(tmp_path):
    """Slots need persistent workers (a new pass reclaims what the last one left): otherwise the loader
    is a plain DataLoader handing over hits, painted in this process, with the same images."""
    det = detector("wcte")
    path = write_hits(tmp_path)
    dm = EventDataModule(
        path, batch_size=8, num_workers=2, fractions=(1.0, 0.0, 0.0), persistent_workers=False
    )
    builder = ImageBuilder(det, reuse_output=True)
    assert dm.build_in_workers(builder)
    loader = dm.train_dataloader()
    assert type(loader) is DataLoader
    batch = next(iter(loader))
    assert not isinstance(batch.inputs, torch.Tensor)
    assert torch.equal(builder.finish(batch.inputs), ImageBuilder(det)(batch))


def test_without_room_in_shared_memory_images_are_painted_here(tmp_path, monkeypatch, caplog):
    """/dev/shm too small for the pool (a container's 64 MB): batches one per item when those slots fit,
    else one warning and the hits hand-over."""
    import recoml.data.datamodule as datamodule

    det = detector("wcte")
    dm = EventDataModule(write_hits(tmp_path), batch_size=8, num_workers=2, fractions=(1.0, 0.0, 0.0))
    builder = ImageBuilder(det, reuse_output=True)
    assert dm.build_in_workers(builder)
    group = slots.batches_per_message(builder, 8)
    assert group > 1
    n_slots = 1 * (2 * 2 + 1) + 3
    need = slots.pool_bytes(builder, 8, n_slots)
    monkeypatch.setattr(datamodule, "shared_memory_free", lambda: need + 1)
    loader = dm.train_dataloader()
    assert isinstance(loader, SlotLoader) and loader.pool.n_slots == n_slots
    assert loader.sampler.group == 1  # type: ignore[attr-defined]
    monkeypatch.setattr(datamodule, "shared_memory_free", lambda: need - 1)
    with caplog.at_level("WARNING", logger="recoml.data.datamodule"):
        loader = dm.train_dataloader()
    assert type(loader) is DataLoader
    assert [r.getMessage() for r in caplog.records if "free in /dev/shm" in r.getMessage()] == [
        f"train loader: {n_slots} output slots need {need / 1e6:.0f} MB of shared memory, "
        f"{(need - 1) / 1e6:.0f} MB free in /dev/shm; the training process paints the images instead "
        "(slower; enlarge /dev/shm, e.g. docker --shm-size, or lower the batch size)"
    ]
    batch = next(iter(loader))
    assert torch.equal(builder.finish(batch.inputs), ImageBuilder(det)(batch))


def test_a_batch_waits_for_a_held_slot_and_gets_it_when_released(tmp_path):
    """Three slots, two held batches, one worker prefetching 2 (a pool too small for a free slot at every
    dispatch): each batch is promised the slot to be released soonest and written only once the consumer
    has moved on from the batch in it, never over a batch it holds; over 2 passes."""
    det = detector("wcte")
    path = write_hits(tmp_path)
    builder = ImageBuilder(det)
    dm = EventDataModule(path, batch_size=8, num_workers=1, fractions=(1.0, 0.0, 0.0))
    assert dm.build_in_workers(builder)
    pool = SlotPool(builder, 8, n_slots=3, hold=2, timeout_s=30)
    sampler = TrainBatchSampler(N_EVENTS, 8, seed=1)
    loader = SlotLoader(
        pool,
        dm.dataset("train"),
        sampler,
        batch_size=None,
        num_workers=1,
        prefetch_factor=2,
        persistent_workers=True,
    )
    reference = EventDataset(path)
    previous = None
    for _ in range(2):
        for batch in loader:
            assert torch.equal(batch.inputs, ImageBuilder(det)(reference[batch.event_index.numpy()]))
            if previous is not None:  # the batch before, held until this one was taken, is intact
                assert torch.equal(previous[0], previous[1])
            previous = (batch.inputs, batch.inputs.clone())
    assert pool.n_promised > 0  # batches did wait for a held slot
    assert pool._waiting == {} and sorted([*pool._free, *(s for _, s in pool._held)]) == [0, 1, 2]


def test_small_outputs_travel_several_batches_per_message():
    """WCTE images of 512 events (17 MB) go 3 per DataLoader item, HK ones of 256 (82 MB) and 512 in
    pairs, small batches at most 4 per item; outputs without a fixed size alone."""
    assert slots.batches_per_message(ImageBuilder(detector("wcte")), 512) == 3
    assert slots.batches_per_message(ImageBuilder(detector("hk")), 256) == 2
    assert slots.batches_per_message(ImageBuilder(detector("hk")), 512) == slots.MIN_BATCHES_PER_MESSAGE == 2
    assert slots.batches_per_message(ImageBuilder(detector("wcte")), 8) == slots.MAX_BATCHES_PER_MESSAGE == 4
    assert slots.batches_per_message(GraphBuilder(detector("wcte"), k=4), 512) == 1


def test_a_worker_without_its_slot_times_out_in_one_sentence(tmp_path):
    det = detector("wcte")
    pool = SlotPool(ImageBuilder(det), 4, n_slots=1, hold=1, timeout_s=0.05)
    seq, slot = pool.assign()
    with pytest.raises(
        SlotTimeoutError, match=r"batch 7 waited .* for output slot 0 of 1: the consumer holds"
    ):
        pool.fill(SlotTask(np.array([0, 1]), seq + 7, slot), EventDataset(write_hits(tmp_path)))


def test_pool_bookkeeping_frees_a_slot_hold_batches_after_it_was_taken(tmp_path):
    """take() frees batch i's slot when batch i + hold is taken; a new pass frees slots handed out and
    never taken; a SlotRef the pool did not hand out is refused."""
    det = detector("wcte")
    pool = SlotPool(ImageBuilder(det), 2, n_slots=5, hold=2)
    allocated = sum(t.numel() * t.element_size() for t in (*pool.outputs, pool.hit_area, pool.written))
    assert slots.pool_bytes(ImageBuilder(det), 2, 5) == allocated
    refs = [SlotRef(*pool.assign(), n_events=2, layout=None) for _ in range(4)]
    assert [r.slot for r in refs] == [0, 1, 2, 3]
    assert pool.ticket.tolist() == [0, 1, 2, 3, -1]  # batch i may write slot i; slot 4 is free

    dataset = EventDataset(write_hits(tmp_path))

    def taken(ref: SlotRef):
        batch = dataset[[0, 1]]
        batch.inputs = ref
        return pool.take(batch)

    assert taken(refs[0]).inputs.shape[0] == 2 and taken(refs[1]) is not None
    assert pool.ticket[0] == 0  # held (the consumer may keep 2)
    taken(refs[2])
    assert pool.ticket[0] == -1 and list(pool._free) == [4, 0]
    pool.new_pass()  # batch 3 was handed out and never taken
    assert list(pool._free) == [4, 0, 3]
    with pytest.raises(Exception, match="not handed out by this pool"):
        taken(refs[3])
