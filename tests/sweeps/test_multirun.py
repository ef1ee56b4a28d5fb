"""Hydra multiruns of ``python -m recoml.train -m``: the summary table, wandb grouping, cluster launchers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from recoml.loggers import multirun_group, wandb_logger
from recoml.sweeps.multirun import summarize, write_summary
from tests.helpers import REPO, TINY, compose_train


def fake_job(sweep: Path, num: int, overrides: list[str], metrics: dict | None, mode: str = "max") -> None:
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(overrides), job / ".hydra" / "overrides.yaml")
    OmegaConf.save(
        OmegaConf.create({"task": {"monitor": "val/acc", "monitor_mode": mode}}), job / "config.yaml"
    )
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps(metrics))


def test_summary_ranks_by_the_monitor_mode_and_lists_failed_jobs_last(tmp_path: Path) -> None:
    fake_job(tmp_path, 0, ["model=resnet18", "seed=1"], {"val/acc": 0.70, "test/acc": 0.69})
    fake_job(tmp_path, 1, ["model=gnn", "seed=1"], None)  # crashed before writing metrics
    fake_job(tmp_path, 2, ["model=pointnet", "seed=1"], {"val/acc": 0.80, "test/acc": 0.78})
    fake_job(tmp_path, 10, ["model=gat", "seed=1"], {"val/acc": 0.75, "test/acc": 0.74})
    frame = summarize(tmp_path)
    assert list(frame["job"]) == ["2", "10", "0", "1"]  # val/acc is maximised; the failed job last
    assert list(frame["model"]) == ["pointnet", "gat", "resnet18", "gnn"]
    assert "seed" not in frame.columns  # only overrides that vary between jobs
    assert list(frame["rank"].astype("Float64").fillna(-1)) == [1, 2, 3, -1]
    assert frame["status"].iloc[-1].startswith("no metrics.json")

    csv, md = write_summary(tmp_path)
    table = pd.read_csv(csv)
    assert list(table["val/acc"].iloc[:3]) == [0.80, 0.75, 0.70]
    assert list(table["test/acc"].iloc[:3]) == [0.78, 0.74, 0.69]
    text = md.read_text()
    assert text.startswith(f"# Multirun {tmp_path.name}: val/acc, highest first")
    assert "| 1 | 2 | pointnet | 0.8 | ok |" in text


def test_summary_of_a_minimised_monitor_puts_the_lowest_first(tmp_path: Path) -> None:
    for num, value in enumerate([0.5, 0.2, 0.9]):
        fake_job(tmp_path, num, [f"optimizer.lr={num}"], {"val/acc": value}, mode="min")
    assert list(summarize(tmp_path)["val/acc"]) == [0.2, 0.5, 0.9]


def test_sweep_without_training_jobs_writes_no_summary(tmp_path: Path) -> None:
    job = tmp_path / "0" / ".hydra"
    job.mkdir(parents=True)
    OmegaConf.save(OmegaConf.create(["n_events=10"]), job / "overrides.yaml")
    OmegaConf.save(OmegaConf.create({"n_events": 10}), job / "config.yaml")  # e.g. recoml.simulate -m
    assert write_summary(tmp_path) is None and not (tmp_path / "summary.csv").exists()


def test_two_point_multirun_writes_its_summary_table(tmp_path: Path, toy_data: Path) -> None:
    logs = tmp_path / "logs"
    command = [
        sys.executable,
        "-m",
        "recoml.train",
        "-m",
        "optimizer.lr=1e-3,3e-4",
        f"paths.data_dir={toy_data}",
        f"paths.log_dir={logs}",
        "model.net.width=8",
        "test=false",
        *TINY,
    ]
    done = subprocess.run(
        command, cwd=tmp_path, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (sweep,) = (logs / "train" / "multiruns").iterdir()
    table = pd.read_csv(sweep / "summary.csv")
    assert sorted(table["optimizer.lr"]) == [3e-4, 1e-3]
    assert table["val/loss"].is_monotonic_increasing and set(table["status"]) == {"ok"}
    for _, row in table.iterrows():  # each row is its own run directory's result
        assert (
            row["val/loss"] == json.loads((sweep / str(row["job"]) / "metrics.json").read_text())["val/loss"]
        )
    assert "| 1 |" in (sweep / "summary.md").read_text()


def test_submitit_slurm_launcher_composes_without_a_cluster() -> None:
    cfg = compose_train(
        [
            "hydra/launcher=submitit_slurm",
            "hydra.launcher.partition=gpu",
            "hydra.launcher.gpus_per_node=4",
            "hydra.launcher.timeout_min=240",
            "trainer=ddp",
        ]
    )
    assert cfg.hydra.callbacks.multirun_summary._target_ == "recoml.sweeps.multirun.MultirunSummary"
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert launcher.signal_delay_s > 0  # a signal before the time limit, so submitit can requeue
    assert instantiate(launcher).params["partition"] == "gpu"
    assert compose_train(["hydra/launcher=submitit_local"]).hydra.launcher._target_.endswith("LocalLauncher")


def _hydra_state(mode: RunMode, sweep_dir: str) -> None:
    cfg = compose_train()
    with open_dict(cfg):
        cfg.hydra.mode = mode
        cfg.hydra.sweep.dir = sweep_dir
    HydraConfig().set_config(cfg)


def test_wandb_groups_every_job_of_a_multirun_under_one_name(tmp_path: Path, wandb_env) -> None:
    previous = HydraConfig.instance().cfg
    try:
        _hydra_state(RunMode.MULTIRUN, str(tmp_path / "multiruns" / "2026-01-02_03-04-05"))
        assert multirun_group("train_wcte_pid") == "train_wcte_pid_2026-01-02_03-04-05"
        logger = wandb_logger(save_dir=str(tmp_path / "w"), group="train_wcte_pid")
        assert logger._wandb_init["group"] == "train_wcte_pid_2026-01-02_03-04-05"
        _hydra_state(RunMode.RUN, str(tmp_path / "multiruns" / "x"))
        assert multirun_group("train_wcte_pid") == "train_wcte_pid"
    finally:
        HydraConfig.instance().cfg = previous


def test_cluster_scripts_exist_and_are_valid_shell() -> None:
    for script in ("scripts/slurm/train_ddp.sbatch", "scripts/slurm/hpo_array.sbatch"):
        path = REPO / script
        assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0, script
        text = path.read_text()
        assert "#SBATCH" in text and "srun" in text
    assert "--signal=SIGUSR1@90" in (REPO / "scripts/slurm/train_ddp.sbatch").read_text()
    assert "ckpt_path=last" in (REPO / "scripts/slurm/train_ddp.sbatch").read_text()
    assert "SLURM_ARRAY_TASK_ID" in (REPO / "scripts/slurm/hpo_array.sbatch").read_text()
    assert (REPO / "scripts/htcondor").is_dir() and any((REPO / "scripts/htcondor").glob("*.sub"))


@pytest.mark.slow
def test_submitit_local_launcher_runs_a_multirun_and_summarises_it(tmp_path: Path, toy_data: Path) -> None:
    """The summary is rebuilt from the sweep directory, so jobs in other processes are counted too."""
    logs = tmp_path / "logs"
    command = [sys.executable, "-m", "recoml.train", "-m", "hydra/launcher=submitit_local", "seed=1,2"]
    command += [
        f"paths.data_dir={toy_data}",
        f"paths.log_dir={logs}",
        "model.net.width=8",
        "test=false",
        *TINY,
    ]
    done = subprocess.run(
        command, cwd=tmp_path, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (sweep,) = (logs / "train" / "multiruns").iterdir()
    assert len(pd.read_csv(sweep / "summary.csv")) == 2
