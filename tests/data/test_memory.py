"""Bounded memory: training start-up (splits, datasets, statistics fit) does not grow with the store size."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from recoml.conf import CONF_DIR
from recoml.data.datamodule import EventDataModule
from recoml.data.store import write_store
from recoml.tasks.module import RecoModule
from tests.helpers import compose_train

HITS_PER_EVENT = 100

# Training start-up as recoml.training.train does it, in a fresh process; prints its peak RSS.
START_UP = """
import json, resource, sys
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from recoml.data.prepare import make_datamodule
from recoml.tasks.module import RecoModule

conf, path = sys.argv[1], sys.argv[2]
with initialize_config_dir(config_dir=conf, version_base="1.3"):
    cfg = compose("train", overrides=[
        "dataset=from_file", f"dataset.path={path}", "dataset.num_workers=0", "dataset.pin_memory=false",
        "model=pointnet", f"paths.output_dir={sys.argv[3]}",
    ])
module = RecoModule(OmegaConf.to_container(cfg, resolve=True))
datamodule = make_datamodule(cfg, module.representation, module.task)
datamodule.setup("fit")
module.fit_statistics(datamodule.statistics_sample(cfg.normalization_events, seed=cfg.seed))
print(json.dumps({"peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def synthetic_store(path: Path, n_events: int) -> Path:
    """WCTE-like events of HITS_PER_EVENT hits (random PMTs, charges, times, labels), written directly."""
    rng = np.random.default_rng(n_events)
    n_hits = n_events * HITS_PER_EVENT
    return write_store(
        path,
        {
            "event_hits_index": np.arange(n_events, dtype=np.int64) * HITS_PER_EVENT,
            "hit_pmt": rng.integers(0, 2014, n_hits).astype(np.int32),
            "hit_charge": rng.exponential(2.0, n_hits).astype(np.float32),
            "hit_time": rng.normal(1000.0, 20.0, n_hits).astype(np.float32),
            "labels": rng.integers(0, 3, n_events).astype(np.int64),
        },
    )


def peak_rss_kib(path: Path) -> int:
    conf = CONF_DIR
    out = subprocess.run(
        [sys.executable, "-c", START_UP, str(conf), str(path), str(path.parent / "run")],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_rss_kib"]


def test_start_up_memory_does_not_grow_with_the_store(tmp_path: Path) -> None:
    small = synthetic_store(tmp_path / "small.h5", 10_000)
    large = synthetic_store(tmp_path / "large.h5", 200_000)  # 20M hits, 240 MB of hit arrays
    rss_small, rss_large = peak_rss_kib(small), peak_rss_kib(large)
    assert rss_large <= 1.1 * rss_small, f"peak RSS {rss_large} KiB at 200k events vs {rss_small} KiB at 10k"


def test_statistics_sample_is_bounded_random_and_reiterable(tmp_path: Path) -> None:
    path = synthetic_store(tmp_path / "s.h5", 5_000)
    dm = EventDataModule(path, batch_size=64, eval_batch_size=100)
    dm.setup("fit")
    sample = dm.statistics_sample(max_events=1_000, seed=3)
    first = np.concatenate([b.event_index.numpy() for b in sample])
    second = np.concatenate([b.event_index.numpy() for b in sample])
    assert np.array_equal(first, second) and len(first) == 1_000 == len(np.unique(first))
    train = dm.split_indices("train")
    assert np.isin(first, train).all() and first.max() > train[len(train) // 2]  # spread over the split
    assert not np.array_equal(sample.positions, dm.statistics_sample(max_events=1_000, seed=4).positions)
    assert len(dm.statistics_sample(max_events=None).positions) == len(train)


def test_fit_statistics_refuses_a_one_shot_iterator(tmp_path: Path) -> None:
    module = RecoModule(
        OmegaConf.to_container(
            compose_train(["model=pointnet", f"paths.output_dir={tmp_path}"], False), resolve=True
        )
    )
    with pytest.raises(TypeError, match="re-iterable"):
        module.fit_statistics(iter([]))
