"""Load a training checkpoint for inference and check it against the data it is asked to read.

Prediction and export rebuild the model from the checkpoint alone (its resolved training config and
state dict), so these checks catch the usual mistakes early, with one sentence each: a file that is not
a recoml checkpoint, data from another detector, a store that lacks the fields the model or the task read.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from recoml.data.identity import Fingerprint, check_store_detector, detector_fingerprint, store_identity
from recoml.data.store import EventStore
from recoml.errors import ConfigError, DataError
from recoml.io.checkpoint import Checkpoint, best_checkpoint, load_checkpoint
from recoml.prediction.schema import AUX_SOURCES
from recoml.tasks.module import build_module

log = logging.getLogger(__name__)

__all__ = ["Checkpoint", "best_checkpoint", "build_module", "load_checkpoint"]


def resolve_data_path(path: str, ckpt: Checkpoint) -> Path:
    """The dataset file: as configured, else (a relative path from another working directory) the file of
    the same name the checkpoint's provenance recorded with its absolute path."""
    p = Path(path)
    if p.is_file():
        return p
    for entry in ckpt.provenance.get("data_files", []):
        recorded = Path(entry.get("path", ""))
        if recorded.name == p.name and recorded.is_file():
            log.info("dataset %s not found here; using %s recorded in the checkpoint", p, recorded)
            return recorded
    raise DataError(
        f"dataset.path: {p} does not exist (the path {ckpt.describe()} was trained on); "
        "pass dataset=<name> or dataset=from_file dataset.path=<store>"
    )


def check_detector(ckpt: Checkpoint, detector_cfg: Any, what: str) -> None:
    """ConfigError when a dataset chosen for prediction belongs to another detector than the model's."""
    if detector_cfg is None:
        return
    theirs = detector_cfg.get("name")
    mine = ckpt.name_of("detector")
    if theirs is not None and mine is not None and theirs != mine:
        raise ConfigError(
            f"{ckpt.describe()} was trained for detector={mine}; {what} is for detector={theirs}"
        )


def check_identity(store: EventStore, module, ckpt: Checkpoint) -> None:
    """DataError when the checkpoint's detector changed since training (a geometry file edited or
    replaced) or the store's conventions differ from those of the training data."""
    recorded = ckpt.provenance.get("data_identity") or {}
    then = Fingerprint.parse(recorded.get("fingerprint"))
    now = detector_fingerprint(module.detector)
    if then is not None and now is not None and then != now:
        raise DataError(
            f"{ckpt.describe()} was trained on a detector with {then}, but its detector config now builds "
            f"one with {now} (the geometry file changed); use the geometry the model was trained on"
        )
    mine = store_identity(store.attrs)
    # Energies are converted by the task (adopt_conventions); times only a per-event reference absorbs.
    keys = ["time_origin"] if module.representation.time_reference == "none" else []
    for key in keys:
        theirs = recorded.get(key)
        if theirs and mine[key] and theirs != mine[key]:
            raise DataError(
                f"{store.path} has {key}={mine[key]} (its attribute) but {ckpt.describe()} was trained on "
                f"data with {key}={theirs}"
            )


def check_store(
    store: EventStore,
    module,
    ckpt: Checkpoint,
    hit_fields: tuple[str, ...],
) -> list[str]:
    """Check the store against the model (detector, PMT ids, fields); return the per-event truth fields
    it also holds for the aux columns of a predictions file. ``hit_fields``: what the representation
    reads."""
    detector = module.detector
    check_store_detector(store.path, store.attrs, detector, ckpt.describe())
    check_identity(store, module, ckpt)
    module.task.adopt_conventions(store.attrs)
    detector_pmts = detector.n_sensors
    task = module.task
    needed = [*hit_fields, *task.hit_fields]
    missing = [f for f in dict.fromkeys(needed) if f not in store.fields]
    no_truth = [f for f in task.target_fields if f not in store.fields]
    if no_truth:  # real data: predictions without their truth (evaluation needs the truth)
        log.warning("%s has no %s: writing predictions without truth", store.path, no_truth)
    if missing:
        raise DataError(
            f"{store.path} lacks the field(s) {missing} that {ckpt.describe()} reads; "
            f"fields present: {store.fields}"
        )
    store.validate(n_pmts=detector_pmts if "hit_pmt" in hit_fields else None, full=True)
    return [f for f in AUX_SOURCES if f in store.event_fields]
