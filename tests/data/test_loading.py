"""EventDataset, batch samplers, DDP sharding and the EventDataModule on small synthetic stores."""

from __future__ import annotations

import pickle

import h5py
import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from recoml.bench.suites import loading_rate
from recoml.contracts.batch import HitBatch
from recoml.data.datamodule import EventDataModule, default_split_path
from recoml.data.dataset import EventDataset
from recoml.data.samplers import EvalBatchSampler, TrainBatchSampler
from recoml.data.splits import load_splits, save_splits
from recoml.data.store import write_store
from recoml.errors import DataError

N = 97  # prime: uneven shards and a short last batch


def make_store(path, n: int = N, seed: int = 0):
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 40, n)
    counts[::11] = 0
    h = int(counts.sum())
    index = np.zeros(n, np.int64)
    index[1:] = np.cumsum(counts)[:-1]
    arrays = {
        "event_hits_index": index,
        "hit_pmt": rng.integers(0, 2014, h).astype(np.int32),
        "hit_charge": rng.exponential(2.0, h).astype(np.float32),
        "hit_time": rng.normal(900, 30, h).astype(np.float32),
        "hit_parent": rng.integers(-1, 3, h).astype(np.int32),
        "labels": rng.integers(0, 4, n).astype(np.int32),
        "energies": rng.uniform(50, 900, (n, 1)).astype(np.float32),
        "positions": rng.normal(0, 100, (n, 1, 3)).astype(np.float32),
        "root_files": np.array([f"f{i // 10}.root" for i in range(n)], dtype=object),
    }
    return write_store(path, arrays)


@pytest.fixture()
def store_path(tmp_path):
    return make_store(tmp_path / "events.h5")


def check_batch(batch: HitBatch, path, rows) -> None:
    """Compare a batch with direct h5py slicing of the file."""
    rows = list(rows)
    with h5py.File(path) as f:
        index = f["event_hits_index"][:]
        bounds = np.append(index, f["hit_pmt"].shape[0])
        assert batch.event_index.tolist() == rows
        assert batch.offsets[0] == 0 and batch.n_events == len(rows)
        for j, r in enumerate(rows):
            a, b = batch.offsets[j].item(), batch.offsets[j + 1].item()
            for name in ("pmt", "charge", "time"):
                np.testing.assert_array_equal(
                    batch.hits[name][a:b].numpy(), f["hit_" + name][bounds[r] : bounds[r + 1]]
                )
        np.testing.assert_array_equal(batch.targets["labels"].numpy(), f["labels"][:][rows])
        if "energies" in batch.targets:
            np.testing.assert_array_equal(batch.targets["energies"].numpy(), f["energies"][:][rows])


@pytest.mark.parametrize("suffix", ["h5", "pt"])
def test_batches_match_direct_reads(tmp_path, suffix):
    path = make_store(tmp_path / f"ev.{suffix}")
    h5 = path if suffix == "h5" else make_store(tmp_path / "same.h5")
    ds = EventDataset(path, target_fields=("labels", "energies"))
    rng = np.random.default_rng(0)
    for rows in (
        rng.integers(0, N, 33),
        np.sort(rng.choice(N, 20, replace=False)),
        np.arange(40, 72),
        [0],
        [],
    ):
        batch = ds[list(rows)]
        check_batch(batch, h5, rows)
    b = ds[[1, 2]]
    assert b.hits["pmt"].dtype == torch.int64 and b.hits["charge"].dtype == torch.float32
    assert b.targets["labels"].dtype == torch.int64 and b.targets["energies"].shape == (2, 1)
    assert b.event_index.dtype == torch.int64 and b.offsets.dtype == torch.int64


def test_subset_positions_and_in_memory(store_path):
    indices = np.random.default_rng(1).permutation(N)[:50]
    lazy = EventDataset(store_path, indices=indices, hit_fields=("pmt", "charge", "time", "parent"))
    mem = EventDataset(
        store_path, indices=indices, hit_fields=("pmt", "charge", "time", "parent"), in_memory=True
    )
    assert len(lazy) == 50
    for pos in ([0, 49, 3, 3], list(range(50)), [7]):
        a, b = lazy[pos], mem[pos]
        assert a.event_index.tolist() == indices[pos].tolist()
        check_batch(a, store_path, indices[pos])
        assert torch.equal(a.offsets, b.offsets) and torch.equal(a.event_index, b.event_index)
        assert a.hits.keys() == b.hits.keys() == {"pmt", "charge", "time", "parent"}
        for k in a.hits:
            assert torch.equal(a.hits[k], b.hits[k])
        assert torch.equal(a.targets["labels"], b.targets["labels"])


def test_dataset_errors_and_pickling(store_path):
    with pytest.raises(DataError, match=r"events\.h5.*'vertex'.*present.*labels"):
        EventDataset(store_path, target_fields=("vertex",))
    with pytest.raises(DataError, match=r"events\.h5.*hit field 'hit_x'"):
        EventDataset(store_path, hit_fields=("hit_x",))
    with pytest.raises(DataError, match=r"index 500 outside"):
        EventDataset(store_path, indices=[1, 500])
    ds = EventDataset(store_path)
    ds[[1, 2]]
    clone = pickle.loads(pickle.dumps(ds))  # what a spawned worker gets: handles reopen lazily
    assert torch.equal(clone[[5, 9]].hits["pmt"], ds[[5, 9]].hits["pmt"])


def gzip_copy(src, dst):
    """The same store with chunked, compressed datasets (h5py fallback path: a file handle per process)."""
    with h5py.File(src) as f, h5py.File(dst, "w") as g:
        for name, d in f.items():
            kw = {} if h5py.check_string_dtype(d.dtype) else {"compression": "gzip", "chunks": True}
            g.create_dataset(name, data=d[()], dtype=d.dtype, **kw)
    return dst


@pytest.mark.parametrize("layout", ["contiguous", "gzip"])
def test_every_event_once_with_workers(store_path, layout):
    if layout == "gzip":
        store_path = gzip_copy(store_path, store_path.with_name("gz.h5"))
    ds = EventDataset(store_path, target_fields=("labels", "energies"))
    ds[[0, 5, 9]]  # the parent has read (and holds handles) before the workers fork
    sampler = TrainBatchSampler(len(ds), 8, seed=1)
    loader = DataLoader(ds, sampler=sampler, batch_size=None, num_workers=2)
    seen = []
    for batch in loader:
        assert isinstance(batch, HitBatch)
        seen.extend(batch.event_index.tolist())
        check_batch(batch, store_path, batch.event_index.tolist())  # packed tensors from a worker
        assert batch.hits["pmt"].dtype == torch.int64 and batch.targets["energies"].dtype == torch.float32
    assert sorted(seen) == list(range(N))
    eval_loader = DataLoader(ds, sampler=EvalBatchSampler(len(ds), 10), batch_size=None, num_workers=2)
    assert [i for b in eval_loader for i in b.event_index.tolist()] == list(range(N))


@pytest.mark.parametrize("drop_last", [False, True])
def test_ddp_sharding_two_ranks(drop_last):
    ev = [list(EvalBatchSampler(N, 8, rank=r, world_size=2)) for r in range(2)]
    flat = [i for shard in ev for b in shard for i in b]
    assert flat == list(range(N))  # contiguous shards, exact cover, no padding
    train = [TrainBatchSampler(N, 8, seed=3, rank=r, world_size=2, drop_last=drop_last) for r in range(2)]
    for s in train:
        s.set_epoch(2)
    batches = [list(s) for s in train]
    assert len(batches[0]) == len(batches[1]) == len(train[0])
    got = [i for shard in batches for b in shard for i in b]
    if drop_last:
        assert len(got) == len(set(got)) and all(len(b) == 8 for shard in batches for b in shard)
    else:
        assert set(got) == set(range(N)) and len(got) == 2 * train[0].num_samples  # padded by one repeat
        assert len(got) - len(set(got)) == 1


def test_set_epoch_changes_order_deterministically():
    s = TrainBatchSampler(N, 16, seed=5)
    e0 = list(s)
    assert list(s) == e0
    s.set_epoch(1)
    e1 = list(s)
    assert e1 != e0 and sorted(sum(e1, [])) == list(range(N))
    t = TrainBatchSampler(N, 16, seed=5)
    t.set_epoch(1)
    assert list(t) == e1
    assert all(b == sorted(b) for b in e1)  # sorted within a batch for ordered reads


def test_datamodule_builds_splits_and_loaders(store_path):
    dm = EventDataModule(store_path, batch_size=16, eval_batch_size=50, target_fields=("labels", "energies"))
    dm.setup("fit")
    split_file = default_split_path(store_path)
    assert split_file.name == "events_splits.npz" and split_file.is_file()
    splits = load_splits(split_file, N)
    train = [i for b in dm.train_dataloader() for i in b.event_index.tolist()]
    assert sorted(train) == splits["train_idxs"].tolist()
    val = [i for b in dm.val_dataloader() for i in b.event_index.tolist()]
    assert val == splits["val_idxs"].tolist()
    assert len(dm.test_dataloader()) == 1
    # A second module with the same seed reuses the file; another seed makes new splits.
    dm2 = EventDataModule(store_path, split_seed=1)
    dm2.setup()
    assert not np.array_equal(dm2.splits["train_idxs"], splits["train_idxs"])
    # A split file without recoml metadata (WatChMaL's, the simulation's) is used as found.
    fixed = {"train_idxs": np.arange(0, 60), "val_idxs": np.arange(60, 80), "test_idxs": np.arange(80, N)}
    save_splits(split_file, fixed)
    dm3 = EventDataModule(store_path, split_seed=7)
    dm3.setup()
    assert all(np.array_equal(dm3.splits[k], v) for k, v in fixed.items())


def test_datamodule_empty_split_raises(store_path):
    dm = EventDataModule(store_path, fractions=(0.9, 0.1, 0.0))
    dm.setup()
    assert len(dm.val_dataloader()) > 0
    with pytest.raises(DataError, match=r"'test' split of .*events\.h5 is empty"):
        dm.test_dataloader()


class _TinyModule(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(1, 4)
        self.seen: dict[int, list[int]] = {}

    def training_step(self, batch: HitBatch, batch_idx: int):
        self.seen.setdefault(self.current_epoch, []).extend(batch.event_index.tolist())
        mean_q = torch.zeros(batch.n_events).index_add_(0, batch.batch, batch.hits["charge"])
        return torch.nn.functional.cross_entropy(self.lin(mean_q[:, None]), batch.targets["labels"])

    def validation_step(self, batch: HitBatch, batch_idx: int) -> None:
        pass

    def predict_step(self, batch: HitBatch, batch_idx: int):
        return batch.event_index

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def test_lightning_trainer(store_path):
    dm = EventDataModule(store_path, batch_size=16, predict_split="all")
    model = _TinyModule()
    trainer = L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        devices=1,
        use_distributed_sampler=False,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=dm)
    train = dm.splits["train_idxs"].tolist()
    assert sorted(model.seen[0]) == sorted(model.seen[1]) == train
    assert model.seen[0] != model.seen[1]  # Lightning called set_epoch
    preds = trainer.predict(model, datamodule=dm)
    assert torch.cat(preds).tolist() == list(range(N))


def test_loading_rate_runs(store_path):
    assert loading_rate(store_path, batch_size=16, n_batches=5, warmup=1) > 0
