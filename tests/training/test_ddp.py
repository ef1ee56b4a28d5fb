"""Two DDP ranks on CPU (``trainer=ddp_sim``, gloo): one Hydra run directory, every validation and test
event evaluated exactly once across the ranks, and metrics that agree with the events."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from recoml.data.splits import load_splits
from recoml.data.store import open_store
from tests.helpers import REPO, TINY


def test_ddp_sim_trains_and_tests_every_event_once(tmp_path: Path, toy_data: Path) -> None:
    run = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "recoml.train",
        "trainer=ddp_sim",
        f"paths.data_dir={toy_data}",
        f"paths.log_dir={tmp_path / 'logs'}",
        f"hydra.run.dir={run}",
        *TINY,
        "trainer.limit_val_batches=null",
        "trainer.limit_test_batches=null",
        "trainer.max_epochs=2",
        "model.net.width=8",
        "+callbacks.events._target_=tests.user_plugins.EventCounter",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]

    # One run directory: the ranks share it (no per-rank Hydra directories, no stray timestamped runs).
    assert not (tmp_path / "logs").exists() or not any((tmp_path / "logs").rglob("config.yaml"))
    assert (run / "config.yaml").is_file() and (run / "metrics.json").is_file()

    store = open_store(toy_data / "toy_wcte.h5")
    splits = load_splits(toy_data / "toy_wcte_splits.npz", store.n_events)
    for stage, split in (("val", "val_idxs"), ("test", "test_idxs")):
        per_rank = [json.loads((run / f"events_{stage}_rank{r}.json").read_text()) for r in (0, 1)]
        assert all(per_rank), f"both ranks evaluate {stage} events"
        seen = np.concatenate([np.asarray(r, dtype=np.int64) for r in per_rank])
        assert len(seen) == len(np.unique(seen)), f"{stage}: an event was evaluated twice"
        np.testing.assert_array_equal(np.sort(seen), np.sort(splits[split]))

    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= metrics["test/acc"] <= 1.0 and np.isfinite(metrics["test/loss"])
