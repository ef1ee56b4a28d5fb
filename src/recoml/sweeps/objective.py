"""One trial: draw parameters, compose the trial's training config, train, return the objective.

``inprocess`` calls :func:`recoml.training.train` here (what ``python -m recoml.train`` calls);
``subprocess`` runs ``python -m recoml.train --config-name hpo <overrides>`` and reads its
``metrics.json`` back, so that several trials can run at once on their own GPUs and DDP trials can
re-launch their ranks. Either way the trial's run directory is ``<study_dir>/trials/<number>``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import optuna

from recoml.errors import RecomlError
from recoml.sweeps.compose import as_job, compose
from recoml.sweeps.pruning import read_pruned
from recoml.sweeps.space import Param, format_value, override_key, to_overrides
from recoml.sweeps.storage import worker_attrs
from recoml.training import train

log = logging.getLogger(__name__)

#: The primary config trials are composed from (train.yaml's tree plus the study's settings).
TRIAL_CONFIG = "hpo"


class TrialError(RecomlError):
    """A trial ran but gave no usable objective (missing, NaN, or its training process failed)."""


def trial_dir(study_dir: str | Path, number: int) -> Path:
    return Path(study_dir).resolve() / "trials" / f"{number:04d}"


class DevicePool:
    """GPU ids shared out among concurrent trials, ``per_trial`` each (none: trials see every device)."""

    def __init__(self, devices: Sequence[str], per_trial: int, n_jobs: int) -> None:
        self._free: queue.Queue[list[str]] = queue.Queue()
        self.enabled = bool(devices) and per_trial > 0
        if self.enabled:
            for i in range(n_jobs):
                self._free.put(list(devices[i * per_trial : (i + 1) * per_trial]))

    @contextmanager
    def acquire(self) -> Iterator[list[str]]:
        if not self.enabled:
            yield []
            return
        ids = self._free.get()
        try:
            yield ids
        finally:
            self._free.put(ids)


@contextmanager
def log_to(path: Path) -> Iterator[None]:
    """Copy this process's log records into ``path`` for the duration (an in-process trial's log)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()


@dataclass
class Objective:
    """The callable handed to ``study.optimize``."""

    space: list[Param]
    study_dir: Path
    objective: str
    base_overrides: list[str] = field(default_factory=list)
    launch: str = "inprocess"
    devices: DevicePool = field(default_factory=lambda: DevicePool([], 0, 1))
    extra_overrides: list[str] = field(default_factory=list)

    def overrides(self, trial: optuna.Trial, values: dict, run_dir: Path) -> list[str]:
        """The study's overrides (minus keys the trial sets), the trial's values, and its run settings."""
        searched = {p.key for p in self.space}
        base = [o for o in self.base_overrides if override_key(o) not in searched]
        return [
            *base,
            *to_overrides(values),
            *self.extra_overrides,
            f"hpo.trial_id={trial._trial_id}",
            f"hydra.run.dir={format_value(str(run_dir))}",
        ]

    def __call__(self, trial: optuna.Trial) -> float:
        run_dir = trial_dir(self.study_dir, trial.number)
        for key, value in worker_attrs().items():
            trial.set_user_attr(key, value)
        trial.set_user_attr("run_dir", str(run_dir))
        try:
            values = {p.key: p.suggest(trial) for p in self.space}
            overrides = self.overrides(trial, values, run_dir)
            trial.set_user_attr("overrides", overrides)
            log.info("trial %d: %s", trial.number, " ".join(to_overrides(values)))
            metrics = self._run(trial, overrides, run_dir)
            value = metrics.get(self.objective)
            if value is None:
                raise TrialError(
                    f"trial {trial.number}: training logged no '{self.objective}' "
                    f"(it logged {sorted(metrics)})"
                )
            if not math.isfinite(value):
                raise TrialError(f"trial {trial.number}: {self.objective} is {value}")
            return float(value)
        except optuna.TrialPruned:
            raise
        except Exception as err:
            trial.set_user_attr("error", f"{type(err).__name__}: {err}"[:4000])
            raise
        except (KeyboardInterrupt, SystemExit) as err:
            # Lightning turns Ctrl+C into SystemExit; Optuna records a FAIL only for KeyboardInterrupt.
            trial.set_user_attr("interrupted", True)
            trial.set_user_attr("error", f"interrupted ({type(err).__name__})")
            raise KeyboardInterrupt from err

    def _run(self, trial: optuna.Trial, overrides: list[str], run_dir: Path) -> dict[str, float]:
        if self.launch == "subprocess":
            return self._run_subprocess(trial, overrides, run_dir)

        cfg = compose(TRIAL_CONFIG, overrides, what=f"trial {trial.number}")
        with log_to(run_dir / "trial.log"), as_job(cfg, run_dir, trial.number) as job_cfg:
            return train(job_cfg)

    def _run_subprocess(self, trial: optuna.Trial, overrides: list[str], run_dir: Path) -> dict[str, float]:
        command = [sys.executable, "-m", "recoml.train", "--config-name", TRIAL_CONFIG, *overrides]
        run_dir.mkdir(parents=True, exist_ok=True)
        output = run_dir / "subprocess.log"
        with self.devices.acquire() as ids:
            env = dict(os.environ)
            if ids:
                env["CUDA_VISIBLE_DEVICES"] = ",".join(ids)
                trial.set_user_attr("devices", ",".join(ids))
            with open(output, "wb") as sink:
                done = subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT, env=env, check=False)
        pruned = read_pruned(run_dir)
        if pruned is not None:
            raise optuna.TrialPruned(f"pruned after epoch {pruned['epoch']} with {pruned['monitor']}")
        if done.returncode != 0:
            raise TrialError(
                f"trial {trial.number}: python -m recoml.train exited with code {done.returncode}: "
                f"{last_error(output)} (log: {output})"
            )
        metrics = run_dir / "metrics.json"
        if not metrics.exists():
            raise TrialError(f"trial {trial.number}: training wrote no {metrics}")
        return json.loads(metrics.read_text())


def last_error(log_file: Path, lines: int = 200) -> str:
    """The most telling line of a failed run's output: recoml's ``error:`` line, else the last line."""
    tail = log_file.read_text(errors="replace").splitlines()[-lines:] if log_file.exists() else []
    tail = [line.strip() for line in tail if line.strip()]
    for line in reversed(tail):
        if line.startswith("error:") or (line.split(":", 1)[0].endswith(("Error", "Exception"))):
            return line
    return tail[-1] if tail else "no output"
