"""Logger factories that need more than Lightning's constructors, and figures handed to the loggers."""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import cast

from lightning.pytorch.loggers import CSVLogger, Logger, MLFlowLogger, TensorBoardLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities import rank_zero_warn

log = logging.getLogger(__name__)


def _wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def multirun_group(group: str | None) -> str | None:
    """``<group>_<sweep dir name>`` inside a Hydra multirun (one group per multirun), else ``group``."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return group
    sweep = Path(str(HydraConfig.get().sweep.dir)).name
    return f"{group}_{sweep}" if group else sweep


def wandb_logger(
    save_dir: str,
    project: str = "recoml",
    name: str | None = None,
    group: str | None = None,
    tags: Sequence[str] = (),
    offline: bool | None = None,
    log_model: bool = False,
    **kwargs,
):
    """A WandbLogger that falls back to offline mode (said once) when no API key is configured.

    Runs are grouped by ``group`` (the experiment name; an HPO study sets its name); in a Hydra
    multirun the sweep directory's name is appended, so that the multirun's jobs form one group.
    """
    from lightning.pytorch.loggers import WandbLogger

    if offline is None:
        offline = os.environ.get("WANDB_MODE") == "offline" or not _wandb_credentials()
        if offline:
            rank_zero_warn(
                "wandb: no API key found (WANDB_API_KEY or ~/.netrc); logging offline to " + save_dir
            )
    if offline:
        os.environ.setdefault("WANDB_MODE", "offline")
    Path(save_dir).mkdir(parents=True, exist_ok=True)
    return WandbLogger(
        save_dir=save_dir,
        project=project,
        name=name,
        group=multirun_group(group),
        tags=list(tags),
        offline=offline,
        log_model=log_model,
        **kwargs,
    )


def mlflow_logger(experiment_name: str, tracking_uri: str, **kwargs):
    """An MLFlowLogger; a local ``file:`` store is allowed explicitly (MLflow 3 refuses it by default,
    but a directory beside the runs is what a laptop or a cluster without a tracking server has)."""
    from lightning.pytorch.loggers import MLFlowLogger

    if tracking_uri.startswith("file:"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        Path(tracking_uri.removeprefix("file:")).mkdir(parents=True, exist_ok=True)
    return MLFlowLogger(experiment_name=experiment_name, tracking_uri=tracking_uri, **kwargs)


class _AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer deletes an existing metrics.csv when it starts; a resumed run (SLURM
    requeue into the same run directory) must append to it instead, under the same header."""

    def _check_log_dir_exists(self) -> None:
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as fh:
                self.metrics_keys = list(next(csv.reader(fh), []))


class AppendingCSVLogger(CSVLogger):
    """Lightning's CSVLogger, except that ``metrics.csv`` is appended to when it exists (resume)."""

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        # Lightning types the attribute with fabric's writer base; ours is the pytorch subclass.
        return cast(ExperimentWriter, self._experiment)


def log_figures(
    loggers: Sequence[Logger], figures: dict[str, Path], files: Sequence[Path] = (), step: int = 0
) -> None:
    """Hand PNG ``figures`` (name -> path) and other ``files`` (a report) to every logger that keeps them:
    TensorBoard as images (``add_image``) and text, Weights & Biases as ``wandb.Image`` and saved files,
    MLflow as artifacts. The CSV logger has nothing to do: the files are in the run directory already."""
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            _to_tensorboard(logger, figures, files, step)
        elif isinstance(logger, WandbLogger):
            _to_wandb(logger, figures, files)
        elif isinstance(logger, MLFlowLogger):
            for path in [*figures.values(), *files]:
                logger.experiment.log_artifact(logger.run_id, str(path), artifact_path="figures")
        else:
            continue
        logger.save()
        log.info("%d figures and %d files logged to %s", len(figures), len(files), type(logger).__name__)


def _rgb(path: Path):
    """A PNG as an HxWx3 uint8 array (what TensorBoard's add_image takes with dataformats='HWC')."""
    import matplotlib.image
    import numpy as np

    image = matplotlib.image.imread(path)[..., :3]
    return (image * 255).round().astype(np.uint8) if image.dtype != np.uint8 else image


def _to_tensorboard(logger: TensorBoardLogger, figures: dict[str, Path], files: Sequence[Path], step: int):
    writer = logger.experiment
    for name, path in figures.items():
        writer.add_image(name, _rgb(path), global_step=step, dataformats="HWC")
    for path in files:
        if path.suffix == ".md":
            writer.add_text(path.stem, path.read_text(), global_step=step)
    writer.flush()


def _to_wandb(logger: WandbLogger, figures: dict[str, Path], files: Sequence[Path]) -> None:
    import wandb

    run = logger.experiment
    run.log({name: wandb.Image(str(path)) for name, path in figures.items()})
    for path in files:
        run.save(str(path), base_path=str(path.parent), policy="now")
