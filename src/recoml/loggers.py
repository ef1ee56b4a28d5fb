"""Logger factories that need more than Lightning's constructors."""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import cast

from lightning.pytorch.loggers import CSVLogger
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
