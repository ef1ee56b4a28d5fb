"""Glue between the config and the data: simulate the toy set on first use, build the DataModule."""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig

from recoml.contracts.representation import Representation
from recoml.contracts.simulator import simulator_of
from recoml.contracts.task import Task
from recoml.data.datamodule import EventDataModule
from recoml.data.integrity import CHECKSUM_ATTR
from recoml.data.store import open_store
from recoml.errors import ConfigError, DataError
from recoml.io.provenance import RECORD_KEYS
from recoml.utils.config import config_dict

log = logging.getLogger(__name__)


def ensure_dataset(cfg: DictConfig) -> Path:
    """Return the dataset path; simulate it first if it is missing and the dataset says how."""
    path = Path(cfg.dataset.path)
    recipe = cfg.dataset.get("simulate")
    if path.exists():
        if recipe:
            check_toy_settings(path, cfg)
        return path
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


#: Store attributes that say who wrote a store and when, not what is in it.
WRITER_ATTRS = frozenset({*RECORD_KEYS, "config", CHECKSUM_ATTR})


def check_toy_settings(path: Path, cfg: DictConfig) -> None:
    """Refuse a toy store that the dataset's recipe would not make today (other generator settings, or a
    toy physics that changed since it was simulated: otherwise an upgraded recoml trains on the old toy).

    The family's own simulator writes an empty store with the recipe into a temporary directory; every
    attribute it records, except who wrote it and when, must equal the existing store's.
    """
    recipe = config_dict(cfg.dataset.simulate)
    recipe.pop("n_events", None)
    detector = instantiate(cfg.detector)
    with tempfile.TemporaryDirectory() as tmp, _quiet_empty_store():
        probe = simulator_of(detector)(
            detector=detector, output=Path(tmp) / "probe.h5", n_events=0, **recipe
        )[0]
        with open_store(probe) as store:
            expected = dict(store.attrs)
    with open_store(path) as store:
        differ = _differences(dict(store.attrs), expected)
    if differ:
        raise DataError(
            f"{path} was simulated with other toy settings than dataset.simulate makes now "
            f"({'; '.join(differ[:4])}): delete it to simulate it anew, set dataset.path to another file, "
            "or dataset.simulate=null to use it as it is"
        )


def _differences(found: dict[str, Any], expected: dict[str, Any], prefix: str = "") -> list[str]:
    """``physics.wall_reflectivity: 0.0 in the file, 0.1375 now``: each setting that differs, settings held
    in dictionaries named one by one."""
    out = []
    for key in sorted(set(expected) - WRITER_ATTRS):
        old, new = found.get(key, "absent"), expected[key]
        if isinstance(old, dict) and isinstance(new, dict):
            out += _differences(old, new, f"{prefix}{key}.")
        elif old != new:
            out.append(f"{prefix}{key}: {_short(old)} in the file, {_short(new)} now")
    return out


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


@contextlib.contextmanager
def _quiet_empty_store() -> Iterator[None]:
    """The probe store is empty on purpose: silence the writers' warning and summary about it."""
    loggers = [logging.getLogger(name) for name in ("recoml.data.store", "recoml.data.simulated")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


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
