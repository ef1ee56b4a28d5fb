"""The peer suite (recoml.bench.peer): skipped without WatChMaL, files in WatChMaL's layout, and the whole
suite against a real WatChMaL checkout (``RECOML_WATCHMAL=DIR``, slow)."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import h5py
import numpy as np
import psutil
import pytest
import torch
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from recoml.bench.peer import (
    CASES,
    RATES,
    add_worker_scaling,
    bench_peer,
    import_watchmal,
    peer_table,
    settle,
    worker_pids,
    write_peer_files,
)
from recoml.conf import CONFIG_MODULE
from recoml.data.dataset import EventDataset
from recoml.families.water_cherenkov.images import ImageBuilder
from tests.helpers import REPO

WATCHMAL = os.environ.get("RECOML_WATCHMAL")


def bench_cfg(tmp_path: Path, overrides: Sequence[str] = ()) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        return compose(config_name="bench", overrides=[f"paths.output_dir={tmp_path}", *overrides])


def detector(name: str):
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        return instantiate(compose(config_name="train", overrides=[f"detector={name}"]).detector)


@pytest.mark.parametrize("where", ["none", "empty_dir"])
def test_without_watchmal_the_suite_is_skipped_in_one_line(tmp_path, caplog, where):
    directory = "null" if where == "none" else str(tmp_path / "nothing_here")
    if where == "empty_dir":
        (tmp_path / "nothing_here").mkdir()
    cfg = bench_cfg(tmp_path, [f"bench.peer.watchmal={directory}"])
    with caplog.at_level(logging.INFO, logger="recoml.bench.peer"):
        assert bench_peer(cfg, tmp_path) == []
    skipped = [r for r in caplog.records if "peer suite skipped" in r.getMessage()]
    assert len(skipped) == 1
    assert not (tmp_path / "peer.json").exists()
    assert not (tmp_path / "peer_data").exists()  # nothing written before knowing WatChMaL is there


def test_peer_files_follow_watchmal_layout(tmp_path):
    """Read back with h5py/numpy alone: WatChMaL's names and dtypes, distinct PMTs per event, and an
    image map that puts every module where recoml's detector map does."""
    det = detector("wcte")
    files = write_peer_files(det, tmp_path, n_events=40, hits_per_event=30, seed=3)
    with h5py.File(files.h5, "r") as f:
        assert f["event_hits_index"].dtype == np.int64
        assert f["hit_pmt"].dtype == np.int32 and f["hit_pmt"].chunks is None  # memory-mappable
        assert f["hit_time"].dtype == f["hit_charge"].dtype == np.float32
        assert f["labels"].shape == (40,) and f["energies"].shape == (40, 1)
        assert f["positions"].shape == (40, 1, 3) and f["angles"].shape == (40, 2)
        index = f["event_hits_index"][:]
        pmt = f["hit_pmt"][:]
    np.testing.assert_array_equal(index, np.arange(40) * 30)
    events = pmt.reshape(40, 30)
    assert all(len(np.unique(e)) == 30 for e in events)
    assert pmt.min() >= 0 and pmt.max() < det.n_pmts
    positions = np.load(files.image_map)["mpmt_image_positions"]
    width = det.image_shape[1]
    module_pixel = np.asarray(det.image_pixel)[:: det.pmts_per_module]
    np.testing.assert_array_equal(positions[:, 0] * width + positions[:, 1], module_pixel)
    splits = np.load(files.splits)
    together = np.concatenate([splits["train_idxs"], splits["val_idxs"], splits["test_idxs"]])
    np.testing.assert_array_equal(np.sort(together), np.arange(40))
    # recoml reads the same file as written.
    batch = EventDataset(files.h5)[[5]]
    np.testing.assert_array_equal(batch.hits["pmt"].numpy(), events[5])
    # Written once: a second call keeps the file.
    mtime = files.h5.stat().st_mtime_ns
    write_peer_files(det, tmp_path, n_events=40, hits_per_event=30, seed=3)
    assert files.h5.stat().st_mtime_ns == mtime


def test_worker_cases_report_their_rate_over_one_process():
    """`vs_0w`: each side's events/s with workers over its own 0-worker events/s, only where the 0-worker
    case ran, and shown in the table."""

    def case(watchmal: float, recoml: float) -> dict:
        rates = (
            {"events_per_cpu_s": 1.0, "events_per_s": watchmal},
            {"events_per_cpu_s": 1.0, "events_per_s": recoml},
        )
        return {"watchmal": rates[0], "recoml": rates[1], "ratio": {r: 1.0 for r in RATES}}

    results = {
        "wcte_batches_0w": case(100.0, 1000.0),
        "wcte_batches_2w": case(150.0, 1900.0),
        "hk_batches_2w": case(10.0, 20.0),  # its 0-worker case did not run
        "wcte_train_w64": case(1.0, 1.0),
    }
    add_worker_scaling(results)
    assert results["wcte_batches_2w"]["vs_0w"] == {"watchmal": 1.5, "recoml": 1.9}
    assert [k for k, r in results.items() if "vs_0w" in r] == ["wcte_batches_2w"]
    table = peer_table(results, "test box")
    assert "1.50x / 1.90x" in list(table.columns[-1].cells)


class BusyItems(torch.utils.data.Dataset):
    """Items that each take ~0.15 s of CPU (a stand-in for a peer's expensive batches)."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int) -> int:
        end = time.process_time() + 0.15
        while time.process_time() < end:
            pass
        return i


def test_settle_waits_until_a_loaders_workers_finished_their_prefetch():
    """After one item, the worker still has its prefetched items to make (~0.3 CPU-s); `settle` returns
    only once it has, so the other side's measurement does not share the cores with it."""
    loader = torch.utils.data.DataLoader(
        BusyItems(), batch_size=None, num_workers=1, prefetch_factor=3, persistent_workers=True
    )
    items = iter(loader)
    assert next(items) == 0
    pids = worker_pids(loader)
    assert len(pids) == 1

    def worker_cpu() -> float:
        times = psutil.Process(pids[0]).cpu_times()
        return times.user + times.system

    settle(loader)
    before = worker_cpu()
    time.sleep(0.2)
    assert worker_cpu() - before < 0.05  # idle: nothing left to make
    assert before > 0.35  # it did make the 3 prefetched items before settle returned
    del items


_skip_without_watchmal = pytest.mark.skipif(
    not (WATCHMAL and (Path(WATCHMAL) / "watchmal").is_dir()),
    reason="set RECOML_WATCHMAL=DIR, a checkout of github.com/WatChMaL/WatChMaL holding the watchmal package",
)


def requires_watchmal(test: Callable[..., None]) -> Callable[..., None]:
    """Marked ``watchmal`` (outside the default selection: a bare clone has no WatChMaL checkout; run
    with ``make test-peer RECOML_WATCHMAL=DIR``), and skipped in ``make test-all`` without one."""
    return pytest.mark.watchmal(_skip_without_watchmal(test))


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_test_peer_refuses_without_a_watchmal_checkout(tmp_path):
    """The WatChMaL tests stay outside ``make test``; ``make test-peer`` says what it needs, exit 2."""
    run = subprocess.run(
        ["make", "-s", "-o", "install", "test-peer", f"RECOML_WATCHMAL={tmp_path}"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 2
    expected = "make test-peer: set RECOML_WATCHMAL=DIR, a checkout of github.com/WatChMaL/WatChMaL holding"
    assert run.stderr.startswith(f"{expected} the watchmal package (got '{tmp_path}')\n"), run.stderr


@pytest.mark.slow
@requires_watchmal
def test_peer_suite_against_watchmal(tmp_path):
    cfg = bench_cfg(
        tmp_path,
        [
            f"bench.peer.watchmal={WATCHMAL}",
            "bench.peer.n_events={wcte: 512, hk: 128}",
            "bench.peer.hits_per_event={wcte: 50, hk: 200}",
            "bench.peer.batch_size={wcte: 32, hk: 8}",
            "bench.peer.n_batches={wcte: 2, hk: 2}",
            "bench.peer.repeats=1",
            "bench.peer.train.batch_size=4",
            "bench.peer.train.n_steps=1",
        ],
    )
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        rows = bench_peer(cfg, tmp_path)
    report = json.loads((tmp_path / "peer.json").read_text())
    required = ["wcte_batches_0w", "wcte_batches_2w", "hk_batches_0w", "hk_batches_2w", "wcte_train_w64"]
    assert list(cfg.bench.peer.cases) == required and set(required) <= set(CASES)
    assert set(report) == {*required, "meta"}
    for case in required:
        entry = report[case]
        for side in ("watchmal", "recoml"):
            assert set(entry[side]) == {*RATES, "training_process_cpu_share"}
            assert all(math.isfinite(v) and v > 0 for v in entry[side].values())
            assert entry[side]["training_process_cpu_share"] <= 1.0
        for rate in RATES:
            assert entry["ratio"][rate] == pytest.approx(entry["recoml"][rate] / entry["watchmal"][rate])
    assert report["wcte_batches_2w"]["workers"] == 2 and report["wcte_train_w64"]["width"] == 64
    assert report["wcte_batches_2w"]["vs_0w"]["recoml"] == pytest.approx(
        report["wcte_batches_2w"]["recoml"]["events_per_s"]
        / report["wcte_batches_0w"]["recoml"]["events_per_s"]
    )
    assert {r["case"] for r in rows} == {f"{c} ({s})" for c in required for s in ("watchmal", "recoml")}


@requires_watchmal
def test_both_sides_draw_the_same_hk_images(tmp_path):
    """WatChMaL's CNNDataset on the peer files (its map file) and recoml's ImageBuilder put each hit's
    charge and time on the same pixel."""
    det = detector("hk")
    files = write_peer_files(det, tmp_path, n_events=4, hits_per_event=300, seed=1)
    wm = import_watchmal(WATCHMAL)
    assert wm is not None
    theirs = wm["pmt"].CNNDataset(str(files.h5), str(files.image_map))
    theirs.set_target("labels")
    ours = ImageBuilder(det)(EventDataset(files.h5)[[0, 1, 2, 3]])
    for i in range(4):
        image = theirs[i]["data"]  # channels: time, charge
        torch.testing.assert_close(image[1], ours[i, 0])
        torch.testing.assert_close(image[0], ours[i, 1])
