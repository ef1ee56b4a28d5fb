"""Glue between the config and the data: simulate the toy set on first use, build the DataModule."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig

from recoml.contracts.representation import Representation
from recoml.contracts.simulator import simulator_of
from recoml.contracts.task import Task
from recoml.data.datamodule import EventDataModule
from recoml.errors import ConfigError, DataError
from recoml.utils.config import config_dict

log = logging.getLogger(__name__)


def ensure_dataset(cfg: DictConfig) -> Path:
    """Return the dataset path; simulate it first if it is missing and the dataset says how."""
    path = Path(cfg.dataset.path)
    if path.exists():
        return path
    recipe = cfg.dataset.get("simulate")
    if not recipe:
        raise DataError(f"dataset.path: {path} does not exist (and dataset.simulate is not set)")
    log.info("%s not found: simulating %d toy %s events", path, recipe.n_events, cfg.detector.name)
    detector = instantiate(cfg.detector)
    simulator_of(detector)(
        detector=detector,
        output=path,
        split_path=None,
        fractions=tuple(cfg.dataset.fractions),
        split_seed=cfg.dataset.split_seed,
        **config_dict(recipe),
    )
    return path


#: Keys of a ``dataset`` option that say where its events come from, not how the DataModule reads them.
SOURCE_KEYS = ("name", "simulate")


def datamodule_from_config(
    dataset: DictConfig,
    *,
    hit_fields: Sequence[str],
    target_fields: Sequence[str],
    path: str | Path | None = None,
    **options: Any,
) -> EventDataModule:
    """The one way from a ``dataset`` config group option to its DataModule (its ``_target_``; training,
    prediction and export all build theirs here); ``options`` add arguments the config does not hold
    (e.g. ``predict_split``). Defaults live in the DataModule's signature."""
    reading = {k: v for k, v in config_dict(dataset).items() if k not in SOURCE_KEYS and v is not None}
    if path is not None:
        reading["path"] = str(path)
    if "_target_" not in reading:
        raise ConfigError(
            f"dataset {dataset.get('name')!r}: no _target_; a dataset option names the DataModule that reads "
            "it, e.g. _target_: recoml.data.datamodule.EventDataModule"
        )
    return instantiate(
        reading,
        hit_fields=tuple(dict.fromkeys(hit_fields)),
        target_fields=tuple(dict.fromkeys(target_fields)),
        _convert_="all",  # plain lists: the DataModule's arguments go into checkpoints (safe loader)
        **options,
    )


def make_datamodule(
    cfg: DictConfig, representation: Representation, task: Task, event_fields: Sequence[str] = ()
) -> EventDataModule:
    """The DataModule reading what the representation and the task need; ``event_fields``: per-event
    fields the representation reads besides (a trigger time, ``time_reference_fields``)."""
    return datamodule_from_config(
        cfg.dataset,
        hit_fields=(*representation.hit_fields, *task.hit_fields),
        target_fields=(*task.target_fields, *event_fields),
    )
