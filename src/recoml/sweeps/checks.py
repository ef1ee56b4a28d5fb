"""Checks made before the first trial is spent: each mistake is one clear :class:`ConfigError`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from recoml.errors import ConfigError
from recoml.sweeps.compose import compose, has_key
from recoml.sweeps.objective import TRIAL_CONFIG
from recoml.sweeps.space import Param, format_value, override_key

Direction = Literal["minimize", "maximize"]
DIRECTIONS: dict[str, Direction] = {
    "min": "minimize",
    "minimize": "minimize",
    "max": "maximize",
    "maximize": "maximize",
}


def check_space(space: Sequence[Param], base_overrides: Sequence[str], source: str) -> None:
    """Every searched key must exist in the composed training config; every group choice must compose.

    Value keys are checked under every option of every searched group, since the trial may pick any.
    """
    if not space:
        raise ConfigError(
            f"{source}: the search space (hpo.params) is empty; choose e.g. hparams_search=pid_cnn"
        )
    searched = {p.key for p in space}
    base = [o for o in base_overrides if override_key(o) not in searched]
    cfg = compose(TRIAL_CONFIG, base, what=source)
    choices = cfg.hydra.runtime.choices
    groups = [p for p in space if p.key in choices]
    values = [p for p in space if p.key not in choices]
    variants: list[tuple[str, DictConfig]] = [("", cfg)]
    for param in groups:
        if param.kind != "categorical":
            raise ConfigError(
                f"{source}: '{param.key}' is a config group; search it with choices, not a range"
            )
        for choice in param.choices:
            override = f"{param.key}={format_value(choice)}"
            variants.append(
                (f" when {override}", compose(TRIAL_CONFIG, [*base, override], what=f"{source}: {override}"))
            )
    for param in values:
        for when, variant in variants:
            if not has_key(variant, param.key):
                parent = param.key.rpartition(".")[0]
                node = (
                    OmegaConf.select(variant, parent, throw_on_resolution_failure=False) if parent else None
                )
                hint = f" ({parent} has: {', '.join(map(str, node))})" if isinstance(node, DictConfig) else ""
                raise ConfigError(
                    f"{source}: '{param.key}' is not a key of the composed train config{when}{hint}"
                )


def metric_names(metrics: nn.Module, prefix: str = "") -> list[str]:
    """Names under which :func:`recoml.tasks.module.flatten_metrics` logs a task's metrics."""
    from torchmetrics import Metric, MetricCollection

    if isinstance(metrics, MetricCollection):
        return [f"{prefix}{k}" for k in metrics.keys(keep_base=False)]
    if isinstance(metrics, Metric):
        return [prefix.rstrip("/")]
    assert isinstance(metrics, nn.ModuleDict)
    names: list[str] = []
    for name, child in metrics.items():
        names += metric_names(child, f"{prefix}{name}/")
    return names


def logged_metrics(cfg: DictConfig) -> list[str]:
    """Every metric a training run with ``cfg`` logs: losses plus the task's and the extra metrics."""
    task = instantiate(cfg.task)
    names = metric_names(task.make_metrics())
    names += list(((cfg.get("metrics") or {}).get("extra") or {}).keys())
    return ["train/loss"] + [f"{stage}/{n}" for stage in ("val", "test") for n in ["loss", *names]]


def check_objective(cfg: DictConfig) -> Direction:
    """The objective must be a metric training logs; returns the study direction (minimize/maximize)."""
    objective = cfg.hpo.objective
    logged = logged_metrics(cfg)
    if objective not in logged:
        raise ConfigError(
            f"hpo.objective: task={cfg.task.name} never logs '{objective}'; it logs {', '.join(logged)}"
        )
    direction = cfg.hpo.get("direction")
    if direction is None:
        if objective != cfg.task.monitor:
            raise ConfigError(
                f"hpo.direction: set minimize or maximize for objective '{objective}' "
                f"(the task's monitor_mode applies only to its monitor '{cfg.task.monitor}')"
            )
        direction = cfg.task.monitor_mode
    if str(direction) not in DIRECTIONS:
        raise ConfigError(f"hpo.direction: expected minimize or maximize, got '{direction}'")
    return DIRECTIONS[str(direction)]


def check_launch(cfg: DictConfig) -> None:
    """In-process trials run one at a time on one process: no parallel trials, no DDP."""
    hpo = cfg.hpo
    if hpo.launch not in ("inprocess", "subprocess"):
        raise ConfigError(f"hpo.launch: expected inprocess or subprocess, got '{hpo.launch}'")
    if int(hpo.n_jobs) < 1:
        raise ConfigError(f"hpo.n_jobs: expected at least 1, got {hpo.n_jobs}")
    if hpo.launch == "subprocess":
        return
    if int(hpo.n_jobs) > 1:
        raise ConfigError(f"hpo.n_jobs={hpo.n_jobs} needs hpo.launch=subprocess (one process per trial)")
    trainer = cfg.trainer
    devices, nodes = trainer.get("devices", 1), trainer.get("num_nodes", 1)
    many = (isinstance(devices, int) and devices > 1) or devices in ("auto", -1) or int(nodes or 1) > 1
    if many or "ddp" in str((trainer.get("strategy") or {}).get("_target_", trainer.get("strategy"))).lower():
        raise ConfigError(
            f"hpo.launch=inprocess cannot run DDP trials (trainer.devices={devices}, "
            f"trainer.num_nodes={nodes}): Lightning re-launches the script for every rank; "
            "use hpo.launch=subprocess"
        )
