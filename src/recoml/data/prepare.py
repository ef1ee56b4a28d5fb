"""Glue between the config and the data: simulate the toy set on first use, build the DataModule."""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from recoml.contracts.simulator import simulator_of
from recoml.errors import DataError

log = logging.getLogger(__name__)

#: Hit fields every water-Cherenkov representation reads.
REPRESENTATION_HIT_FIELDS = ("hit_pmt", "hit_charge", "hit_time")


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
        **OmegaConf.to_container(recipe, resolve=True),
    )
    return path


def make_datamodule(cfg: DictConfig, task):
    """The DataModule reading what the representation and the task need."""
    from recoml.data.datamodule import EventDataModule

    d = cfg.dataset
    # A dataset may name its representation's hit fields (tracker stores have no PMTs).
    representation_fields = tuple(d.get("hit_fields") or REPRESENTATION_HIT_FIELDS)
    return EventDataModule(
        path=d.path,
        split_path=d.get("split_path"),
        fractions=tuple(d.get("fractions", (0.8, 0.1, 0.1))),
        seed=d.get("split_seed", 0),
        batch_size=d.batch_size,
        eval_batch_size=d.get("eval_batch_size"),
        num_workers=d.get("num_workers", 0),
        pin_memory=d.get("pin_memory", False),
        in_memory=d.get("in_memory", False),
        hit_fields=tuple(dict.fromkeys((*representation_fields, *task.hit_fields))),
        target_fields=tuple(task.target_fields),
    )
