"""What a run leaves for a physicist to look at: training curves in the run directory and in the loggers,
evaluation figures in TensorBoard and W&B, progress as plain lines off a terminal, a warning when a CPU
run would take long, and logs with one line per message."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from recoml.callbacks import LogProgress, progress_bar
from recoml.plotting.training import curve_groups, plot_training_curves, steps_per_epoch
from recoml.training import train
from tests.evaluation_helpers import compose_verb, write_predictions
from tests.helpers import REPO, TINY, make_cfg


def tensorboard_images(directory: Path) -> list[str]:
    """Image tags in the TensorBoard event files under ``directory`` (read back by TensorBoard itself)."""
    (events,) = {p.parent for p in directory.rglob("events.out.tfevents.*")}
    acc = EventAccumulator(str(events), size_guidance={"images": 0})
    acc.Reload()
    return acc.Tags()["images"]


def test_curves_put_validation_points_at_whole_epochs() -> None:
    # 4 optimizer steps per epoch, training loss every 2 steps, validation at each epoch's last step.
    frame = pd.DataFrame(
        {
            "epoch": [0, 0, 0, 1, 1, 1],
            "step": [1, 3, 3, 5, 7, 7],
            "train/loss": [1.2, 1.0, None, 0.8, 0.7, None],
            "val/loss": [None, None, 0.9, None, None, 0.75],
            "val/acc": [None, None, 0.6, None, None, 0.7],
            "lr-AdamW": [1e-3, 1e-3, None, 5e-4, 5e-4, None],
        }
    )
    assert steps_per_epoch(frame) == 4.0
    assert curve_groups(frame) == {
        "loss": ["train/loss", "val/loss"],
        "acc": ["val/acc"],
        "learning rate": ["lr-AdamW"],
    }
    fig = plot_training_curves(frame)
    loss, acc, lr = fig.axes
    lines = {line.get_label(): line for line in loss.get_lines()}
    assert list(lines["val/loss"].get_xdata()) == [1.0, 2.0]  # epochs done
    assert list(lines["train/loss"].get_xdata()) == [0.5, 1.0, 1.5, 2.0]
    assert loss.get_xlabel() == "epoch" and acc.get_ylabel() == "acc" and lr.get_yscale() == "log"
    with pytest.raises(ValueError, match="no training or validation values"):
        plot_training_curves(frame[["epoch", "step"]])


def test_curves_after_every_epoch_and_in_tensorboard(tmp_path: Path, toy_data: Path) -> None:
    overrides = ["logger=many", "trainer.max_epochs=2", "trainer.log_every_n_steps=1"]
    train(make_cfg(tmp_path, toy_data, overrides))
    run = tmp_path / "run"
    assert (run / "training_curves.png").is_file() and (run / "training_curves.pdf").is_file()
    frame = pd.read_csv(run / "csv" / "metrics.csv")
    fig = plot_training_curves(frame)
    loss = fig.axes[0]
    val = next(line for line in loss.get_lines() if line.get_label() == "val/loss")
    assert list(val.get_xdata()) == [1.0, 2.0]  # both epochs drawn
    assert "training_curves" in tensorboard_images(run / "tensorboard")


def test_cpu_cost_warning_gives_the_estimate(
    tmp_path: Path, toy_data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    overrides = ["trainer.limit_train_batches=4", "callbacks.cost_estimate.warn_minutes=1e-6"]
    with caplog.at_level(logging.WARNING, logger="recoml.callbacks"):
        train(make_cfg(tmp_path, toy_data, overrides))
    (message,) = [r.getMessage() for r in caplog.records if "predicted to take" in r.getMessage()]
    assert "s per batch x 4 batches x 1 epochs" in message and "trainer=gpu" in message
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="recoml.callbacks"):
        train(make_cfg(tmp_path / "b", toy_data, ["trainer.limit_train_batches=4"]))
    assert "predicted to take" not in caplog.text  # seconds, far below the default 30 minutes


def test_progress_is_a_bar_on_a_terminal_and_lines_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    from lightning.pytorch.callbacks import TQDMProgressBar

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert isinstance(progress_bar(), TQDMProgressBar)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert isinstance(progress_bar(every_s=5), LogProgress)


def test_command_line_run_logs_each_message_once_without_tips_or_tqdm_frames(
    tmp_path: Path, toy_data: Path
) -> None:
    tiny = [o for o in TINY if "progress_bar" not in o]
    cmd = [
        sys.executable,
        "-m",
        "recoml.train",
        f"paths.data_dir={toy_data}",
        f"paths.log_dir={tmp_path / 'logs'}",
        *tiny,
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    text = result.stdout + result.stderr
    assert text.count("Seed set to 42") == 1
    assert text.count("GPU available:") == 1
    assert "Tip" not in text and "litlogger" not in text and "litmodels" not in text
    assert "it/s]" not in text and "\r" not in text  # stderr is a pipe: no tqdm frames
    assert "epoch 1/1 done in" in text  # the plain progress line instead
    (run,) = (tmp_path / "logs" / "train" / "runs").iterdir()
    log_lines = (run / "train.log").read_text().splitlines()
    assert sum("Seed set to 42" in line for line in log_lines) == 1
    assert (run / "training_curves.png").is_file()


def test_evaluation_figures_and_report_reach_tensorboard(tmp_path: Path) -> None:
    from recoml.evaluation import evaluate

    pred = write_predictions(tmp_path / "a" / "predictions.h5", "energy")
    overrides = [f"predictions={pred}", f"paths.root_dir={tmp_path}", "logger=tensorboard"]
    result = evaluate(compose_verb("evaluate", tmp_path / "run", overrides))
    tags = tensorboard_images(tmp_path / "run" / "tensorboard")
    pngs = sorted((tmp_path / "run" / "plots").rglob("*.png"))
    assert len(tags) == len(pngs) > 3 and "energy_residual_fractional" in tags
    assert result.report.is_file()


@pytest.mark.usefixtures("wandb_env")
def test_evaluation_figures_and_report_reach_wandb_offline(tmp_path: Path) -> None:
    import wandb

    from recoml.evaluation import evaluate

    pred = write_predictions(tmp_path / "a" / "predictions.h5", "energy")
    overrides = [f"predictions={pred}", f"paths.root_dir={tmp_path}", "logger=wandb"]
    evaluate(compose_verb("evaluate", tmp_path / "run", overrides))
    wandb.finish()
    (run_dir,) = (tmp_path / "run" / "wandb").glob("offline-run-*")
    media = list((run_dir / "files" / "media" / "images").glob("*.png"))
    n_pngs = len(list((tmp_path / "run" / "plots").rglob("*.png")))
    assert len(media) == n_pngs > 3
    assert (run_dir / "files" / "report.md").is_file() and (run_dir / "files" / "metrics.json").is_file()


def test_evaluation_report_shows_the_training_curves_of_the_run(tmp_path: Path, pid_ckpt: Path) -> None:
    from recoml.evaluation import evaluate_files
    from recoml.prediction.run import predict

    assert (pid_ckpt.parent.parent / "training_curves.png").is_file()  # drawn while it trained
    pred = predict(compose_verb("predict", tmp_path / "predict", [f"ckpt_path={pid_ckpt}"]))
    result = evaluate_files([pred], tmp_path / "eval", labels=["cnn"])
    plots = tmp_path / "eval" / "plots"
    assert (plots / "training_cnn_curves.png").is_file() and (plots / "training_cnn_curves.pdf").is_file()
    report = result.report.read_text()
    assert (
        "## training" in report
        and "![cnn: loss and metrics vs epoch](plots/training_cnn_curves.png)" in report
    )


def test_evaluation_figures_and_report_reach_mlflow(tmp_path: Path) -> None:
    from recoml.evaluation import evaluate

    pred = write_predictions(tmp_path / "a" / "predictions.h5", "energy")
    overrides = [f"predictions={pred}", f"paths.root_dir={tmp_path}", "logger=mlflow"]
    evaluate(compose_verb("evaluate", tmp_path / "run", overrides))
    logged = {p.name for p in (tmp_path / "outputs" / "mlruns").rglob("artifacts/figures/*")}
    pngs = {p.name for p in (tmp_path / "run" / "plots").rglob("*.png")}
    assert pngs and pngs | {"report.md", "metrics.json"} == logged


@pytest.mark.usefixtures("wandb_env")
def test_training_curves_reach_wandb_offline(tmp_path: Path, toy_data: Path) -> None:
    import wandb

    train(make_cfg(tmp_path, toy_data, ["logger=[csv,wandb]"]))
    wandb.finish()
    (run_dir,) = (tmp_path / "run" / "wandb").glob("offline-run-*")
    (image,) = (run_dir / "files" / "media" / "images").glob("training_curves*.png")
    assert image.stat().st_size > 10_000
