"""An Optuna study over training configs, driven directly (hydra-optuna-sweeper pins optuna < 3).

:func:`run_study` checks everything it can before the first trial (search-space keys, objective,
storage, launch mode, export target), then opens or resumes the study in its storage, runs the trials
still missing from ``hpo.n_trials``, and writes the reports. Any number of processes may run it against
the same storage at once; they share the trials.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import optuna
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from optuna.trial import FrozenTrial, TrialState

from recoml.errors import ConfigError
from recoml.io.provenance import write_json
from recoml.sweeps import experiment, report
from recoml.sweeps.checks import Direction, check_launch, check_objective, check_space
from recoml.sweeps.objective import DevicePool, Objective
from recoml.sweeps.space import format_value, parse_space
from recoml.sweeps.storage import describe, fail_dead_trials, open_storage

log = logging.getLogger(__name__)

StudyCallback = Callable[[optuna.Study, FrozenTrial], None]


def counted(study: optuna.Study) -> int:
    """Trials that count towards ``hpo.n_trials``: finished ones, except those cut short by an interrupt."""
    return sum(
        1
        for t in study.get_trials(deepcopy=False)
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        or (t.state == TrialState.FAIL and not t.user_attrs.get("interrupted"))
    )


class StopWhenDone:
    """Stop this worker once the study (all workers together) holds ``n_trials`` counted trials."""

    def __init__(self, n_trials: int) -> None:
        self.n_trials = n_trials

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if counted(study) >= self.n_trials:
            study.stop()


def visible_devices(devices: Sequence | None) -> list[str]:
    """GPU ids to share out: ``hpo.devices``, else CUDA_VISIBLE_DEVICES, else every GPU torch sees."""
    if devices is not None:
        return [str(d) for d in devices]
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())]


def export_paths(cfg: DictConfig) -> tuple[Path, Path | None]:
    """``experiment/hpo/<study>.yaml`` in the study directory, and in ``hpo.export_dir`` when one is given.

    The study directory is then a config directory: ``--config-dir <study_dir> experiment=hpo/<study>``.
    Nothing is written into the installed package or the source checkout.
    """
    hpo = cfg.hpo
    relative = Path("experiment") / "hpo" / f"{hpo.study_name}.yaml"
    local = Path(hpo.study_dir) / relative
    export_dir = hpo.get("export_dir")
    return local, (Path(export_dir) / relative if export_dir else None)


def run_study(
    cfg: DictConfig, overrides: Sequence[str] = (), callbacks: Sequence[StudyCallback] = ()
) -> optuna.Study:
    """Run (or resume) the study configured by ``cfg`` (the composed ``hpo.yaml``).

    ``overrides`` are the command-line overrides the study was started with; every trial is composed
    from them plus its own parameters. ``callbacks`` are extra Optuna callbacks (after each trial).
    """
    hpo = cfg.hpo
    choice = OmegaConf.select(cfg, "hpo.study_name", throw_on_resolution_failure=False)
    if not choice or str(choice) == "None" or not hpo.params:
        raise ConfigError(
            "hparams_search: choose a search space (e.g. hparams_search=pid_cnn) or set hpo.study_name "
            "and hpo.params"
        )
    study_name, study_dir = str(hpo.study_name), Path(hpo.study_dir)
    source = _space_source()
    space = parse_space(hpo.params, source)
    check_launch(cfg)
    direction = check_objective(cfg)
    check_space(space, overrides, source)
    devices = _device_pool(cfg)
    storage = open_storage(hpo.storage, study_dir, hpo.get("heartbeat_interval"), hpo.get("grace_period"))
    where = describe(hpo.storage, study_dir)
    local_export, export = export_paths(cfg)
    if export is not None:
        experiment.check_writable(export, study_name, where, bool(hpo.overwrite))

    study = _open_study(cfg, storage, study_name, direction, where)
    fail_dead_trials(study)
    study = _with_sampler(cfg, storage, study)
    remaining = int(hpo.n_trials) - counted(study)
    log.info(
        "study %s in %s: %d trials counted, %d to run (%s)",
        study_name,
        where,
        counted(study),
        max(remaining, 0),
        source,
    )
    objective = Objective(
        space=space,
        study_dir=study_dir,
        objective=str(hpo.objective),
        base_overrides=list(overrides),
        launch=str(hpo.launch),
        devices=devices,
        extra_overrides=_logger_groups(cfg, study_name),
    )
    try:
        if remaining > 0:
            study.optimize(
                objective,
                n_trials=remaining,
                timeout=hpo.get("timeout"),
                n_jobs=int(hpo.n_jobs),
                catch=(Exception,),
                callbacks=[StopWhenDone(int(hpo.n_trials)), *callbacks],
                gc_after_trial=True,
            )
    except BaseException:
        try:  # the finished trials' reports, on the way out; never hide why the study stopped
            write_reports(study, cfg, where, local_export, export)
        except Exception as err:  # noqa: BLE001
            log.error("reports not written: %s: %s", type(err).__name__, err)
        raise
    write_reports(study, cfg, where, local_export, export)
    return study


def _space_source() -> str:
    """Where the search space came from, for error messages."""
    if HydraConfig.initialized():
        choice = HydraConfig.get().runtime.choices.get("hparams_search")
        if choice:
            return f"hparams_search={choice}"
    return "hpo.params"


def _open_study(
    cfg: DictConfig, storage: optuna.storages.BaseStorage, name: str, direction: Direction, where: str
) -> optuna.Study:
    hpo = cfg.hpo
    study = optuna.create_study(storage=storage, study_name=name, direction=direction, load_if_exists=True)
    if study.direction.name.lower() != direction:
        raise ConfigError(
            f"hpo.direction: study '{name}' in {where} is set to {study.direction.name.lower()}, "
            f"this run asks for {direction}; use another hpo.study_name"
        )
    recorded = study.user_attrs.get("objective")
    if recorded is None:
        study.set_user_attr("objective", str(hpo.objective))
    elif recorded != hpo.objective:
        raise ConfigError(
            f"hpo.objective: study '{name}' in {where} optimises '{recorded}', this run asks for "
            f"'{hpo.objective}'; use another hpo.study_name"
        )
    trials_dir = Path(hpo.study_dir) / "trials"
    if not study.trials and trials_dir.is_dir() and any(trials_dir.iterdir()) and not hpo.overwrite:
        raise ConfigError(
            f"hpo.study_dir: {trials_dir} holds trials of a study that {where} does not know; remove it, "
            "choose another hpo.study_name, or set hpo.overwrite=true"
        )
    return study


def _with_sampler(cfg: DictConfig, storage: optuna.storages.BaseStorage, study: optuna.Study) -> optuna.Study:
    """Reload the study with the configured sampler and pruner (seeded by the seed and the trials so far)."""
    sampler_cfg = cfg.hpo.sampler
    kwargs = {}
    if sampler_cfg.get("seed") is not None:
        # (seed, trials so far) through a SeedSequence: workers seeded 1 and 2 never draw alike.
        entropy = [int(sampler_cfg.seed), len(study.trials)]
        kwargs["seed"] = int(np.random.SeedSequence(entropy).generate_state(1)[0])
    sampler = instantiate(sampler_cfg, **kwargs)
    pruner = instantiate(cfg.hpo.pruner) if cfg.hpo.get("pruner") else None
    return optuna.load_study(study_name=study.study_name, storage=storage, sampler=sampler, pruner=pruner)


def _device_pool(cfg: DictConfig) -> DevicePool:
    """GPUs for subprocess trials, ``devices_per_trial`` each; a ConfigError if there are too few."""
    hpo = cfg.hpo
    n_jobs, per_trial = int(hpo.n_jobs), int(hpo.devices_per_trial)
    devices = visible_devices(hpo.get("devices")) if hpo.launch == "subprocess" and per_trial > 0 else []
    if devices and n_jobs * per_trial > len(devices):
        raise ConfigError(
            f"hpo.n_jobs={n_jobs} trials x hpo.devices_per_trial={per_trial} need {n_jobs * per_trial} GPUs, "
            f"{len(devices)} are available ({','.join(devices)}); lower hpo.n_jobs or set hpo.devices"
        )
    return DevicePool(devices, per_trial, n_jobs)


def _logger_groups(cfg: DictConfig, study_name: str) -> list[str]:
    """Every logger that groups runs (wandb) groups the study's trials under the study name."""
    loggers = cfg.get("logger") or {}
    return [
        f"logger.{name}.group={format_value(study_name)}"
        for name, entry in loggers.items()
        if isinstance(entry, DictConfig) and "group" in entry
    ]


def write_reports(
    study: optuna.Study, cfg: DictConfig, where: str, local_export: Path, export: Path | None
) -> None:
    """Trials table, plots, and the best trial as an experiment config (when a trial completed)."""
    hpo = cfg.hpo
    study_dir, objective = Path(hpo.study_dir), str(hpo.objective)
    table = report.trials_table(study, objective)
    report.write_table(table, study_dir / "trials", title=f"Study {study.study_name} ({where})")
    if hpo.get("plots", True):
        report.write_plots(study, study_dir, objective, hpo.get("plot_style"))
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    states = table["state"].value_counts().to_dict()
    if not complete:
        log.warning(
            "study %s: no completed trial yet (%s); no best experiment written", study.study_name, states
        )
        return
    best = study.best_trial
    assert best.value is not None  # a completed single-objective trial has its value
    overrides = list(best.user_attrs.get("overrides", []))
    experiment.write_experiment(
        [p for p in (local_export, export) if p is not None],
        overrides,
        study.study_name,
        where,
        best.number,
        objective,
        float(best.value),
    )
    write_json(
        study_dir / "best_trial.json",
        {
            "trial": best.number,
            objective: best.value,
            "params": best.params,
            "run_dir": best.user_attrs.get("run_dir"),
            "overrides": overrides,
            "experiment": str(local_export),
            "exported": None if export is None else str(export),
        },
    )
    log.info(
        "study %s: %s; best trial %d: %s = %.6g; trials table %s",
        study.study_name,
        states,
        best.number,
        objective,
        best.value,
        study_dir / "trials.md",
    )
    log.info(
        "reproduce the best trial: python -m recoml.train --config-dir %s experiment=hpo/%s",
        study_dir.resolve(),
        study.study_name,
    )
