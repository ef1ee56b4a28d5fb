"""Resume, pre-emption signals, NaN losses and the offline W&B logger: the things that go wrong on
clusters, each checked end to end through ``train(cfg)`` or the ``python -m recoml.train`` command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from recoml.tasks.module import NonFiniteLossError
from recoml.training import train
from tests.helpers import REPO, TINY, make_cfg

#: Deterministic, short, and no early stopping, so that two runs can be compared weight by weight.
DETERMINISTIC = [
    "trainer.deterministic=true",
    "trainer.limit_train_batches=3",
    "trainer.limit_val_batches=1",
    "callbacks.early_stopping=null",
    "model.net.width=8",
    "scheduler=cosine",
    "test=false",
]


def _weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]


def test_resume_gives_the_weights_of_an_uninterrupted_run(tmp_path: Path, toy_data: Path) -> None:
    full = make_cfg(tmp_path / "full", toy_data, [*DETERMINISTIC, "trainer.max_epochs=2"])
    train(full)

    # The same run, stopped after its first epoch (as a pre-empted job), then resumed with ckpt_path=last.
    stop = ["+callbacks.stop._target_=tests.user_plugins.StopAfterEpochs", "+callbacks.stop.epochs=1"]
    first = make_cfg(tmp_path / "parts", toy_data, [*DETERMINISTIC, "trainer.max_epochs=2", *stop])
    train(first)
    last = tmp_path / "parts" / "run" / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=False)["epoch"] == 0
    # The stored config names the test's callback, which the resumed run no longer builds: trusted by name.
    trust = "trust=[tests.user_plugins.StopAfterEpochs]"
    resumed = make_cfg(
        tmp_path / "parts", toy_data, [*DETERMINISTIC, "trainer.max_epochs=2", "ckpt_path=last", trust]
    )
    train(resumed)

    a = _weights(tmp_path / "full" / "run" / "checkpoints" / "last.ckpt")
    b = _weights(last)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)


def test_resume_restores_optimizer_scheduler_and_epoch(tmp_path: Path, toy_data: Path) -> None:
    stop = ["+callbacks.stop._target_=tests.user_plugins.StopAfterEpochs", "+callbacks.stop.epochs=1"]
    train(make_cfg(tmp_path, toy_data, [*DETERMINISTIC, "trainer.max_epochs=3", *stop]))
    saved = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert saved["optimizer_states"][0]["state"], "optimizer moments are saved"
    assert saved["epoch"] == 0 and saved["global_step"] == 3
    assert saved["lr_schedulers"][0]["last_epoch"] == 3  # cosine steps every optimizer step
    assert {"torch", "numpy", "python"} <= saved["rng_states"].keys()

    spy = ["+callbacks.spy._target_=tests.user_plugins.TrainerSpy"]
    train(
        make_cfg(
            tmp_path,
            toy_data,
            [
                *DETERMINISTIC,
                "trainer.max_epochs=3",
                "ckpt_path=last",
                *spy,
                "trust=[tests.user_plugins.StopAfterEpochs]",
            ],
        )
    )
    from tests.user_plugins import TrainerSpy

    trainer = TrainerSpy.trainer
    assert trainer is not None and trainer.current_epoch == 3  # epochs 1 and 2 ran after the restore
    assert trainer.global_step == 9 and trainer.lr_scheduler_configs[0].scheduler.last_epoch == 9


def test_ckpt_path_last_without_a_checkpoint_is_one_clear_error(tmp_path: Path, toy_data: Path) -> None:
    from recoml.errors import ConfigError

    with pytest.raises(ConfigError, match="no last.ckpt"):
        train(make_cfg(tmp_path, toy_data, ["ckpt_path=last"]))


def test_nan_loss_stops_and_names_the_events(tmp_path: Path, toy_data: Path) -> None:
    cfg = make_cfg(
        tmp_path,
        toy_data,
        ["~model.net", "+model.net={_target_:tests.user_plugins.NaNImageNet,_partial_:true,hidden:8}"],
    )
    with pytest.raises(NonFiniteLossError, match=r"train loss is nan .* events \[\d+"):
        train(cfg)


def test_wandb_without_api_key_runs_offline_and_groups_by_experiment(
    tmp_path: Path, toy_data: Path, wandb_env, caplog
) -> None:
    cfg = make_cfg(tmp_path, toy_data, ["logger=wandb", "experiment_name=my_study"])
    with pytest.warns(UserWarning, match="logging offline") as warned:
        metrics = train(cfg)
    assert sum("logging offline" in str(w.message) for w in warned) == 1  # said once
    assert "test/acc" in metrics
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    import wandb

    assert wandb.run is None or wandb.run.group == "my_study"


def _train_command(tmp_path: Path, data: Path, *overrides: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "recoml.train",
        f"paths.data_dir={data}",
        f"paths.log_dir={tmp_path / 'logs'}",
        f"hydra.run.dir={tmp_path / 'run'}",
        *TINY,
        *overrides,
    ]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGUSR1"])
def test_signal_saves_a_checkpoint_that_resumes(tmp_path: Path, toy_data: Path, signame: str) -> None:
    """A run signalled mid-epoch (SLURM pre-emption) writes last.ckpt and exits; ckpt_path=last resumes."""
    run = tmp_path / "run"
    common = ["trainer.max_epochs=1", "trainer.limit_train_batches=null", "model.net.width=8"]
    cmd = _train_command(
        tmp_path,
        toy_data,
        *common,
        "+callbacks.marker._target_=tests.user_plugins.BatchMarker",
        "+callbacks.marker.delay=0.2",
    )
    proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not (run / "batch_2.done").exists():
            assert proc.poll() is None, proc.stdout.read().decode()
            assert time.monotonic() < deadline, "training never reached its third batch"
            time.sleep(0.1)
        proc.send_signal(getattr(signal, signame))
        output = proc.communicate(timeout=120)[0].decode()
    finally:
        proc.kill()
    last = run / "checkpoints" / "last.ckpt"
    assert last.is_file(), output
    assert proc.returncode == 128 + getattr(signal, signame), output  # a scheduler sees "stopped"
    assert f"received {signame}" in output
    saved = torch.load(last, map_location="cpu", weights_only=False)
    assert saved["global_step"] >= 2 and saved["epoch"] == 0

    resumed = subprocess.run(
        _train_command(
            tmp_path, toy_data, *common, "ckpt_path=last", "trust=[tests.user_plugins.BatchMarker]"
        ),
        cwd=REPO,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "restored all states" in (resumed.stdout + resumed.stderr).lower()
    assert (run / "metrics.json").is_file()


def _cli_train(work: Path, data: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    """``python -m recoml.train`` in ``work`` with Hydra choosing the run directory (outputs/...)."""
    cmd = [
        sys.executable,
        "-m",
        "recoml.train",
        f"paths.data_dir={data}",
        *TINY,
        "model.net.width=8",
        *overrides,
    ]
    done = subprocess.run(cmd, cwd=work, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_debug_runs_have_their_own_tree_and_ckpt_last_resumes_in_the_run_directory(
    tmp_path: Path, toy_data: Path
) -> None:
    _cli_train(tmp_path, toy_data, "test=false")
    (run,) = (tmp_path / "outputs" / "train" / "runs").iterdir()
    # A newer debug run that writes a last.ckpt of the same experiment: its own tree, never resumed.
    _cli_train(tmp_path, toy_data, "debug=limit", "trainer.max_epochs=1", "test=false")
    (debug_run,) = (tmp_path / "outputs" / "debug" / "train" / "runs").iterdir()
    assert (debug_run / "checkpoints" / "last.ckpt").is_file()

    resumed = _cli_train(tmp_path, toy_data, "ckpt_path=last", "trainer.max_epochs=2", "test=false")
    assert [p.name for p in (tmp_path / "outputs" / "train" / "runs").iterdir()] == [run.name]
    assert f"resuming this run's {run}" in resumed.stdout + resumed.stderr
    assert torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["epoch"] == 1
    epochs = {line.split(",")[0] for line in (run / "csv" / "metrics.csv").read_text().splitlines()[1:]}
    assert {"0", "1"} <= epochs, "the resumed epoch is appended to the run's own metrics.csv"


def test_ckpt_last_never_resumes_a_debug_run(tmp_path: Path) -> None:
    from recoml.errors import ConfigError
    from recoml.training import resolve_checkpoint
    from tests.helpers import compose_train

    debug = compose_train([f"paths.log_dir={tmp_path}", "debug=limit"], False)
    run = tmp_path / "train" / "runs" / "a_debug_run_in_the_main_tree"
    debug.paths.output_dir = str(run)
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    (run / "config.yaml").write_text(OmegaConf.to_yaml(debug, resolve=True))
    cfg = compose_train([f"paths.log_dir={tmp_path}"], False)
    cfg.paths.output_dir = str(tmp_path / "new")
    with pytest.raises(ConfigError, match="debug runs are never resumed"):
        resolve_checkpoint("last", cfg)
    assert debug.paths.runs_dir == f"{tmp_path}/debug"
