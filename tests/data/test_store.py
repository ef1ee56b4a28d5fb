"""Event store: writing (atomic, contiguous, provenance), reading (WatChMaL layout), validation, splits."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest

import recoml
from recoml.data.splits import load_splits, make_splits, save_splits
from recoml.data.store import StoreWriter, open_store, write_store
from recoml.errors import DataError

N_PMTS = 2014


def make_arrays(n: int = 40, seed: int = 0, mean_hits: int = 20) -> dict[str, np.ndarray]:
    """A small store in the docs/design.md layout, with empty events and every per-event field."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(mean_hits, n)
    counts[::7] = 0
    h = int(counts.sum())
    index = np.zeros(n, np.int64)
    index[1:] = np.cumsum(counts)[:-1]
    return {
        "event_hits_index": index,
        "hit_pmt": rng.integers(0, N_PMTS, h).astype(np.int32),
        "hit_charge": rng.exponential(2.0, h).astype(np.float32),
        "hit_time": rng.normal(900, 30, h).astype(np.float32),
        "hit_parent": rng.integers(-1, 3, h).astype(np.int32),
        "labels": rng.integers(0, 4, n).astype(np.int32),
        "energies": rng.uniform(50, 900, (n, 1)).astype(np.float32),
        "positions": rng.normal(0, 100, (n, 1, 3)).astype(np.float32),
        "directions": rng.normal(0, 1, (n, 1, 3)).astype(np.float32),
        "angles": rng.uniform(0, 3, (n, 2)).astype(np.float32),
        "event_ids": np.arange(n, dtype=np.int32),
        "root_files": np.array([f"/data/wcsim_{i // 10}.root" for i in range(n)], dtype=object),
        "veto": rng.random(n) < 0.1,
    }


def assert_same(a: np.ndarray, b: np.ndarray) -> None:
    if np.asarray(a).dtype.kind == "O":
        assert list(a) == list(b)
    else:
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("suffix", ["h5", "pt"])
def test_round_trip_every_field(tmp_path, suffix):
    arrays = make_arrays()
    path = write_store(tmp_path / f"ev.{suffix}", arrays, attrs={"source": {"hash": "abc"}, "n_pmts": N_PMTS})
    store = open_store(path)
    assert store.format == ("hdf5" if suffix == "h5" else "pt")
    assert store.n_events == 40
    assert sorted(store.object_types["hits"]) == ["hit_charge", "hit_parent", "hit_pmt", "hit_time"]
    assert "event_hits_index" not in store.event_fields and "labels" in store.event_fields
    for name, arr in arrays.items():
        assert_same(arr, store.array(name))
    # A batch in a given order equals per-event slicing.
    rows = [5, 0, 39, 7, 5, 12]
    flat, offsets, events = store.read(rows)
    idx = np.append(arrays["event_hits_index"], len(arrays["hit_pmt"]))
    assert offsets[0] == 0 and len(offsets) == len(rows) + 1
    for j, r in enumerate(rows):
        for name in store.object_types["hits"]:
            assert_same(flat[name][offsets[j] : offsets[j + 1]], arrays[name][idx[r] : idx[r + 1]])
    for name in store.event_fields:
        assert_same(events[name], arrays[name][rows])
    assert store.attrs["recoml_version"] == recoml.__version__
    assert store.attrs["created_utc"].endswith("+00:00") and "command" in store.attrs and store.attrs["host"]
    assert store.attrs["source"] == {"hash": "abc"} and store.attrs["n_pmts"] == N_PMTS
    store.validate(n_pmts=N_PMTS)


def test_hdf5_layout_is_contiguous(tmp_path):
    path = write_store(tmp_path / "ev.h5", make_arrays())
    with h5py.File(path) as f:
        for name, dset in f.items():
            assert dset.chunks is None and dset.compression is None, name
        assert h5py.check_string_dtype(f["root_files"].dtype) is not None
        assert f["event_hits_index"].dtype == np.int64
        assert {"recoml_version", "created_utc", "command", "host"} <= set(f.attrs)


def test_reads_watchmal_file_as_is(tmp_path):
    """A file laid out as WatChMaL's DataTools write it (h5py, no recoml attributes) reads exactly."""
    a = make_arrays(n=25, seed=3)
    path = tmp_path / "watchmal.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("event_hits_index", data=a["event_hits_index"])
        for name in ("hit_pmt", "hit_charge", "hit_time", "hit_parent"):
            dset = f.create_dataset(name, shape=a[name].shape, dtype=a[name].dtype)
            dset[:] = a[name]
        for name in ("labels", "energies", "positions", "angles", "event_ids", "directions", "veto"):
            f.create_dataset(name, data=a[name])
        f.create_dataset("veto2", data=~a["veto"])
        rf = f.create_dataset("root_files", shape=(25,), dtype=h5py.special_dtype(vlen=str))
        rf[:] = a["root_files"]
        f.create_dataset("root_files_fixed", data=a["root_files"].astype("S"))  # fixed-length bytes
    store = open_store(path)
    assert store.n_events == 25 and store.attrs == {}
    flat, offsets, events = store.read(
        [24, 3, 3], ["hit_pmt", "hit_time"], ["energies", "root_files", "root_files_fixed", "veto2"]
    )
    idx = np.append(a["event_hits_index"], len(a["hit_pmt"]))
    expected = np.concatenate([a["hit_pmt"][idx[r] : idx[r + 1]] for r in (24, 3, 3)])
    assert_same(flat["hit_pmt"], expected)
    assert_same(events["energies"], a["energies"][[24, 3, 3]])
    assert list(events["root_files"]) == list(a["root_files"][[24, 3, 3]])
    assert list(events["root_files_fixed"]) == list(a["root_files"][[24, 3, 3]])
    assert_same(events["veto2"], ~a["veto"][[24, 3, 3]])


def test_chunked_compressed_fallback(tmp_path):
    a = make_arrays(n=30, mean_hits=5000)
    path = tmp_path / "gz.h5"
    with h5py.File(path, "w") as f:
        for name, arr in a.items():
            kw = {"dtype": h5py.string_dtype()} if arr.dtype.kind == "O" else {"compression": "gzip"}
            f.create_dataset(name, data=arr, **kw)
    store = open_store(path)
    rows = np.array([29, 1, 2, 3, 17, 0])
    flat, offsets, events = store.read(rows)
    ref = open_store(write_store(tmp_path / "ref.h5", a)).read(rows)
    for name in flat:
        assert_same(flat[name], ref[0][name])
    assert_same(offsets, ref[1])
    assert_same(events["root_files"], ref[2]["root_files"])
    # Far-apart events: read run by run instead of the covering span.
    flat, offsets, _ = store.read([29, 1], event_fields=())
    ref = open_store(tmp_path / "ref.h5").read([29, 1], event_fields=())
    for name in flat:
        assert_same(flat[name], ref[0][name])


def test_overwrite(tmp_path):
    path = write_store(tmp_path / "ev.h5", make_arrays())
    with pytest.raises(DataError, match="ev.h5.*overwrite=true"):
        write_store(path, make_arrays(seed=1))
    with pytest.raises(DataError, match="overwrite=true"):
        StoreWriter(path)
    write_store(path, make_arrays(n=10, seed=1), overwrite=True)
    assert open_store(path).n_events == 10


@pytest.mark.parametrize("suffix", ["h5", "pt"])
def test_writer_exception_leaves_nothing(tmp_path, suffix):
    path = tmp_path / f"ev.{suffix}"
    with pytest.raises(RuntimeError, match="boom"):
        with StoreWriter(path) as w:
            w.append(make_arrays(n=5))
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []
    # A bad chunk (offsets past the end) also cleans up.
    bad = make_arrays(n=5)
    bad["event_hits_index"][-1] = 10**6
    with pytest.raises(DataError, match="chunk 1"):
        with StoreWriter(path) as w:
            w.append(make_arrays(n=5))
            w.append(bad)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("suffix", ["h5", "pt"])
def test_writer_chunks_equal_write_store(tmp_path, suffix):
    chunks = [make_arrays(n=n, seed=s) for n, s in ((13, 1), (1, 2), (20, 3))]
    with StoreWriter(tmp_path / f"streamed.{suffix}", attrs={"run": 7}) as w:
        for c in chunks:
            w.append(c)
    total = {}
    shift = 0
    for c in chunks:
        total.setdefault("event_hits_index", []).append(c["event_hits_index"] + shift)
        shift += len(c["hit_pmt"])
        for k, v in c.items():
            if k != "event_hits_index":
                total.setdefault(k, []).append(v)
    total = {k: np.concatenate(v) for k, v in total.items()}
    ref = open_store(write_store(tmp_path / f"whole.{suffix}", total))
    got = open_store(tmp_path / f"streamed.{suffix}")
    assert got.n_events == 34 and got.attrs["run"] == 7
    for name in ref.fields:
        assert_same(got.array(name), ref.array(name))
    if suffix == "h5":
        with h5py.File(tmp_path / "streamed.h5") as f:
            assert all(d.chunks is None for d in f.values())
    assert sorted(os.listdir(tmp_path)) == sorted([f"streamed.{suffix}", f"whole.{suffix}"])


@pytest.mark.parametrize("suffix", ["h5", "pt"])
def test_tracking_object_type(tmp_path, suffix):
    a = make_arrays(n=12)
    rng = np.random.default_rng(5)
    npart = rng.integers(0, 5, 12)
    a["event_particles_index"] = np.concatenate([[0], np.cumsum(npart)[:-1]]).astype(np.int64)
    a["particle_pt"] = rng.random(npart.sum()).astype(np.float32)
    a["particle_pdg"] = rng.integers(-13, 14, npart.sum()).astype(np.int64)
    store = open_store(write_store(tmp_path / f"trk.{suffix}", a))
    assert sorted(store.object_types) == ["hits", "particles"]
    assert sorted(store.object_types["particles"]) == ["particle_pdg", "particle_pt"]
    flat, offsets, _ = store.read([11, 2], event_fields=(), object_type="particles")
    b = np.append(a["event_particles_index"], npart.sum())
    assert_same(flat["particle_pt"], np.concatenate([a["particle_pt"][b[r] : b[r + 1]] for r in (11, 2)]))
    assert_same(offsets, np.array([0, npart[11], npart[11] + npart[2]]))


# ------------------------------------------------------------------------------------------ bad inputs


def _write_raw(path, arrays):
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            f.create_dataset(k, data=v)
    return path


def test_missing_file_and_garbage(tmp_path):
    with pytest.raises(DataError, match=r"nothere\.h5.*not found"):
        open_store(tmp_path / "nothere.h5")
    junk = tmp_path / "junk.h5"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(DataError, match=r"junk\.h5.*not an HDF5 file"):
        open_store(junk)
    junk_pt = tmp_path / "junk.pt"
    junk_pt.write_bytes(b"hello" * 100)
    with pytest.raises(DataError, match=r"junk\.pt.*not a readable torch \.pt archive"):
        open_store(junk_pt)
    other = tmp_path / "junk.bin"
    other.write_bytes(b"hello" * 100)
    with pytest.raises(DataError, match=r"junk\.bin.*neither an HDF5 file nor"):
        open_store(other)


@pytest.mark.parametrize("suffix", ["h5", "pt"])
def test_truncated(tmp_path, suffix):
    path = write_store(tmp_path / f"cut.{suffix}", make_arrays(n=200))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=rf"cut\.{suffix}.*(truncated or corrupt|truncated, corrupt)"):
        open_store(path)


def test_missing_dataset_lists_expected_and_found(tmp_path):
    a = make_arrays()
    del a["hit_time"]
    path = _write_raw(tmp_path / "nohittime.h5", a)
    with pytest.raises(DataError, match=r"nohittime\.h5.*'hit_time'.*expected.*found.*hit_charge"):
        open_store(path, require=["hit_pmt", "hit_time", "labels"])
    b = make_arrays()
    del b["event_hits_index"]
    path = _write_raw(tmp_path / "noindex.h5", b)
    with pytest.raises(DataError, match=r"noindex\.h5.*event_hits_index.*expected.*found"):
        open_store(path)


def test_bad_offsets(tmp_path):
    a = make_arrays()
    a["event_hits_index"][10] = a["event_hits_index"][9] - 1
    with pytest.raises(DataError, match=r"dec\.h5.*decreases at event 10"):
        open_store(_write_raw(tmp_path / "dec.h5", a))
    b = make_arrays()
    b["event_hits_index"][-3:] = len(b["hit_pmt"]) + 5
    with pytest.raises(DataError, match=r"past\.h5.*past the end.*event 37"):
        open_store(_write_raw(tmp_path / "past.h5", b))
    with pytest.raises(DataError, match=r"decreases at event"):  # the writer refuses the same
        write_store(tmp_path / "dec2.h5", a)


def test_inconsistent_lengths(tmp_path):
    a = make_arrays()
    a["hit_charge"] = a["hit_charge"][:-1]
    with pytest.raises(DataError, match=r"len\.h5.*different lengths.*hit_charge"):
        open_store(_write_raw(tmp_path / "len.h5", a))
    b = make_arrays()
    b["energies"] = b["energies"][:-2]
    with pytest.raises(DataError, match=r"rows\.h5.*'energies' has 38 rows.*40 events"):
        open_store(_write_raw(tmp_path / "rows.h5", b))


def test_pmt_out_of_range(tmp_path):
    a = make_arrays()
    first_hit_of_event_3 = a["event_hits_index"][3]
    a["hit_pmt"][first_hit_of_event_3] = N_PMTS + 7
    store = open_store(write_store(tmp_path / "pmt.h5", a))
    with pytest.raises(DataError, match=rf"pmt\.h5.*value {N_PMTS + 7} at event 3.*n_pmts={N_PMTS}"):
        store.validate(n_pmts=N_PMTS)
    store.validate()  # without a detector there is nothing to check the range against


@pytest.mark.parametrize("suffix", ["h5", "pt"])
def test_nan_inf(tmp_path, suffix):
    a = make_arrays()
    idx = a["event_hits_index"]
    a["hit_time"][idx[5]] = np.nan
    a["hit_time"][idx[8] + 1] = np.inf
    a["hit_time"][idx[20]] = np.nan
    store = open_store(write_store(tmp_path / f"nan.{suffix}", a))
    with pytest.raises(
        DataError, match=rf"nan\.{suffix}.*'hit_time' has 3 NaN/inf values, the first in event 5"
    ):
        store.validate()


# --------------------------------------------------------------------------------------------- splits


def test_splits_fractions_cover_disjoint_seeded():
    s = make_splits(1000, (0.8, 0.1, 0.1), seed=3)
    assert [len(s[k]) for k in ("train_idxs", "val_idxs", "test_idxs")] == [800, 100, 100]
    allidx = np.concatenate(list(s.values()))
    assert np.array_equal(np.sort(allidx), np.arange(1000))
    assert all(v.dtype == np.int64 and np.all(np.diff(v) > 0) for v in s.values())
    again = make_splits(1000, (0.8, 0.1, 0.1), seed=3)
    other = make_splits(1000, (0.8, 0.1, 0.1), seed=4)
    assert all(np.array_equal(s[k], again[k]) for k in s)
    assert not np.array_equal(s["val_idxs"], other["val_idxs"])


def test_grouped_splits_keep_groups_together():
    groups = np.repeat(np.array([f"file_{i}.root" for i in range(50)], dtype=object), 20)
    s = make_splits(len(groups), (0.7, 0.15, 0.15), seed=0, groups=groups)
    seen = [set(groups[v]) for v in s.values()]
    assert not (seen[0] & seen[1] or seen[0] & seen[2] or seen[1] & seen[2])
    assert sum(len(v) for v in s.values()) == len(groups)
    assert 0.6 < len(s["train_idxs"]) / len(groups) < 0.8


def test_split_file_round_trip_and_errors(tmp_path):
    s = make_splits(100, seed=1)
    path = save_splits(tmp_path / "s.npz", s, meta={"seed": 1})
    got = load_splits(path, 100)
    assert all(np.array_equal(got[k], s[k]) for k in s)
    with pytest.raises(DataError, match=r"s\.npz.*'train_idxs' holds event \d+ outside \[0, 50\)"):
        load_splits(path, 50)
    bad = dict(s, test_idxs=np.append(s["test_idxs"], s["train_idxs"][0]))
    save_splits(tmp_path / "overlap.npz", bad)
    with pytest.raises(DataError, match=r"overlap\.npz.*in both 'train_idxs' and 'test_idxs'"):
        load_splits(tmp_path / "overlap.npz", 100)
    np.savez(tmp_path / "nokey.npz", train_idxs=s["train_idxs"])
    with pytest.raises(DataError, match=r"nokey\.npz.*missing split key.*val_idxs"):
        load_splits(tmp_path / "nokey.npz", 100)
