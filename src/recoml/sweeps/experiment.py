"""A trial as an ``experiment`` config: ``python -m recoml.train --config-dir <study_dir>
experiment=hpo/<study>`` reproduces it (the study directory holds ``experiment/hpo/<study>.yaml``).

The file holds the trial's config as a difference from ``train.yaml``: group choices that differ from the
defaults become ``override /group: option`` entries, every other differing value is written out. This
captures everything the trial ran with (the study's command-line overrides, the hparams_search file's
global settings, the trial's parameters) and nothing machine-specific: ``paths`` stay out.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from recoml.errors import ConfigError
from recoml.io.atomic import write_text
from recoml.sweeps.compose import compose
from recoml.utils.config import config_dict

log = logging.getLogger(__name__)

#: Top-level keys that describe where or how the study ran, not what a trial trained.
EXCLUDED_KEYS = ("hydra", "hpo", "paths", "task_name", "experiment_name")
#: Keys below the top level that only a study adds.
EXCLUDED_PATHS = (("callbacks", "optuna_pruning"),)
#: Groups that are not part of a training recipe.
EXCLUDED_GROUPS = ("hydra", "experiment", "hparams_search", "local")

MARKER = "# recoml-hpo:"

_ABSENT = object()


def marker(study_name: str, storage: str) -> str:
    """The header line that says which study wrote an exported file (overwrite protection)."""
    return f"{MARKER} study={study_name} storage={storage}"


def check_writable(path: Path, study_name: str, storage: str, overwrite: bool) -> None:
    """Refuse to replace an experiment file another study (or a person) wrote, unless ``overwrite``."""
    if overwrite or not path.exists():
        return
    if marker(study_name, storage) not in path.read_text(errors="ignore").splitlines():
        raise ConfigError(
            f"hpo.export_dir: {path} exists and was not written by study '{study_name}' "
            f"({storage}); choose another hpo.study_name or set hpo.overwrite=true"
        )


def _keep_group(group: str) -> bool:
    return group.split("/", 1)[0] not in EXCLUDED_GROUPS


def _recipe(cfg: DictConfig) -> dict[str, Any]:
    container = config_dict(cfg, resolve=False)
    for key in EXCLUDED_KEYS:
        container.pop(key, None)
    for path in EXCLUDED_PATHS:
        node: Any = container
        for part in path[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(path[-1], None)
    return container


def leaf_diff(new: Mapping[str, Any], old: Mapping[str, Any], prefix: str = "") -> tuple[dict, list[str]]:
    """Values of ``new`` that differ from ``old`` (nested, lists compared whole) and keys only ``old`` has."""
    changed: dict[str, Any] = {}
    removed = [f"{prefix}{k}" for k in old if k not in new]
    for key, value in new.items():
        before = old.get(key, _ABSENT)
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            sub, gone = leaf_diff(value, before, f"{prefix}{key}.")
            removed += gone
            if sub:
                changed[key] = sub
        elif value != before:
            changed[key] = value
    return changed, removed


def trial_recipe(
    overrides: Sequence[str], config_name: str = "hpo"
) -> tuple[dict[str, str], dict, list[str]]:
    """Group choices, values and removed keys that turn ``train.yaml`` into the trial's config."""
    trial = compose(config_name, overrides, what="best trial")
    defaults = compose("train", (), what="train.yaml").hydra.runtime.choices
    choices = {
        group: choice
        for group, choice in trial.hydra.runtime.choices.items()
        if _keep_group(group) and choice != defaults.get(group)
    }
    base_overrides = [f"{g}={'null' if c is None else c}" for g, c in choices.items()]
    base = compose("train", base_overrides, what="train.yaml with the best trial's choices")
    values, removed = leaf_diff(_recipe(trial), _recipe(base))
    return choices, values, removed


def render(
    choices: Mapping[str, str | None],
    values: Mapping[str, Any],
    removed: Sequence[str],
    header: Sequence[str],
) -> str:
    """The experiment file's text (a ``# @package _global_`` config)."""
    lines = ["# @package _global_", *(f"# {h}" if not h.startswith("#") else h for h in header)]
    if removed:
        lines.append(f"# The trial also removed {sorted(removed)}; an experiment file cannot remove keys.")
    if choices:
        lines.append("defaults:")
        lines += [f"  - override /{g}: {'null' if c is None else c}" for g, c in choices.items()]
    if values:
        lines.append(OmegaConf.to_yaml(OmegaConf.create(dict(values))).rstrip())
    return "\n".join(lines) + "\n"


def write_experiment(
    paths: Sequence[Path],
    overrides: Sequence[str],
    study_name: str,
    storage: str,
    trial_number: int,
    objective: str,
    value: float,
    config_name: str = "hpo",
) -> list[Path]:
    """Write the trial with ``overrides`` as an experiment file at each of ``paths`` (temporary name, then
    rename)."""
    choices, values, removed = trial_recipe(overrides, config_name)
    if removed:
        log.warning("best trial removed config keys %s: an experiment file cannot express that", removed)
    stamp = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    header = [
        marker(study_name, storage),
        f"Best trial {trial_number} of study '{study_name}': {objective} = {value:.6g} (written {stamp}).",
        f"Reproduce: python -m recoml.train --config-dir DIR experiment=hpo/{study_name}, DIR the study "
        "directory or any directory holding this file as experiment/hpo/ (paths are not part of it)",
    ]
    text = render(choices, values, removed, header)
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, text)
    return list(paths)
