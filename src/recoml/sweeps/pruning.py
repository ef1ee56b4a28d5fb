"""Pruning of unpromising trials from Lightning: report the objective after every validation epoch.

``optuna-integration`` (which holds Optuna's own Lightning callback) is not a dependency, and its
callback needs the live ``Trial`` object. This one reaches the trial through the study's storage by id,
so it works the same whether the trial trains in the study's process, in a ``python -m recoml.train``
subprocess, or on every rank of a DDP run (rank 0 reports and decides; the decision is broadcast so
that all ranks stop together).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import lightning.pytorch as pl
import optuna
from lightning.pytorch.utilities import rank_zero_warn

from recoml.io.provenance import write_json
from recoml.sweeps.storage import open_storage

log = logging.getLogger(__name__)

#: Written into the trial's run directory when it is pruned (how a parent process learns of it).
PRUNED_MARKER = "pruned.json"


class OptunaPruning(pl.Callback):
    """Report ``monitor`` to trial ``trial_id`` of the study each validation epoch; prune if told to.

    With ``trial_id=None`` (training outside a study) it does nothing.
    """

    def __init__(
        self,
        trial_id: int | None,
        study_name: str,
        storage: str | None,
        study_dir: str | Path,
        monitor: str,
        pruner: optuna.pruners.BasePruner | None = None,
        dirpath: str | Path | None = None,
    ) -> None:
        self.trial_id = trial_id
        self.study_name = study_name
        self.storage = storage
        self.study_dir = Path(study_dir)
        self.monitor = monitor
        self.pruner = pruner
        self.dirpath = Path(dirpath) if dirpath else None
        self._trial: optuna.Trial | None = None
        self._warned = False

    def _get_trial(self) -> optuna.Trial:
        if self._trial is None:
            study = optuna.load_study(
                study_name=self.study_name,
                storage=open_storage(self.storage, self.study_dir),
                pruner=self.pruner,
            )
            assert self.trial_id is not None  # only asked for from a trial (on_validation_end checks)
            self._trial = optuna.Trial(study, int(self.trial_id))
        return self._trial

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.trial_id is None or trainer.sanity_checking:
            return
        epoch = trainer.current_epoch
        prune, value = False, None
        if trainer.is_global_zero:
            metric = trainer.callback_metrics.get(self.monitor)
            if metric is None:
                if not self._warned:
                    rank_zero_warn(f"OptunaPruning: '{self.monitor}' is not logged in validation; no pruning")
                    self._warned = True
            else:
                value = float(metric)
                trial = self._get_trial()
                trial.report(value, step=epoch)
                prune = trial.should_prune()
        prune = trainer.strategy.broadcast(prune, src=0)
        if not prune:
            return
        message = f"trial pruned after epoch {epoch} with {self.monitor} = {value}"
        if trainer.is_global_zero and self.dirpath is not None:
            write_json(
                self.dirpath / PRUNED_MARKER, {"epoch": epoch, "monitor": self.monitor, "value": value}
            )
        raise optuna.TrialPruned(message)


def read_pruned(run_dir: str | Path) -> dict | None:
    """The pruning record a trial's run left behind, if it was pruned."""
    path = Path(run_dir) / PRUNED_MARKER
    return json.loads(path.read_text()) if path.exists() else None
