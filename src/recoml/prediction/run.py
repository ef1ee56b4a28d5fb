"""The function behind ``python -m recoml.predict``: a checkpoint + a dataset split -> ``predictions.h5``.

The model, task and detector come from the checkpoint's own config; the predict config chooses the data
(the training dataset by default, or ``dataset=<group option>``), the split, the trainer (``cpu``,
``gpu``, ``ddp``, ``ddp_sim``) and where the file goes. Every event of the split is predicted exactly
once, also under DDP, and predictions stream to disk batch by batch.
"""

from __future__ import annotations

import logging
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from recoml.data.datamodule import EventDataModule
from recoml.data.identity import event_keys, keys_digest
from recoml.data.normalization import time_reference_fields
from recoml.data.prepare import datamodule_from_config
from recoml.data.store import open_store
from recoml.errors import ConfigError, DataError
from recoml.io.atomic import atomic_output
from recoml.prediction.checkpoint import (
    Checkpoint,
    build_module,
    check_detector,
    check_store,
    load_checkpoint,
    resolve_data_path,
)
from recoml.prediction.schema import FILE_NAME, PRED, TRUE
from recoml.prediction.writer import PredictionWriter
from recoml.utils.cli import save_config, tidy_logging
from recoml.utils.config import config_dict

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test", "all")


def check_output(path: str | os.PathLike | None, overwrite: bool) -> Path | None:
    """An output the user named: refuse an existing one unless ``overwrite=true``."""
    if path in (None, ""):
        return None
    path = Path(str(path))
    if path.exists() and not overwrite:
        raise DataError(f"output: {path} already exists; set overwrite=true to replace it")
    return path


def copy_atomic(src: Path, dst: Path) -> Path:
    """Copy ``src`` to ``dst`` under a temporary name, then rename (a reader never sees half a file)."""
    with atomic_output(dst) as tmp:
        shutil.copyfile(src, tmp)
    return dst


def dataset_config(cfg: DictConfig, ckpt: Checkpoint) -> DictConfig:
    """The dataset to predict on: ``cfg.dataset`` when chosen (same detector as the model), else the
    checkpoint's; ``batch_size`` overrides the evaluation batch size."""
    if cfg.get("dataset") is not None:
        check_detector(ckpt, cfg.get("detector"), f"dataset={cfg.dataset.get('name')}")
        dataset = OmegaConf.create(config_dict(cfg.dataset))
    else:
        if cfg.get("detector") is not None:
            check_detector(ckpt, cfg.detector, "the chosen detector")
        dataset = OmegaConf.create(ckpt.config["dataset"])
    if cfg.get("batch_size"):
        dataset.eval_batch_size = int(cfg.batch_size)
    return dataset


def make_predict_datamodule(
    dataset: DictConfig,
    path: Path,
    module: Any,
    split: str,
    aux_fields: list[str],
    extra_hit_fields: tuple[str, ...] = (),
) -> EventDataModule:
    """Loaders over ``split`` reading what the model and task need, the aux truth fields and
    ``extra_hit_fields`` (hit fields copied into the predictions file, e.g. for track building)."""
    task = module.task
    with open_store(path) as store:  # real data may lack the truth: predict without it
        target_fields = [f for f in task.target_fields if f in store.fields]
        time_fields = time_reference_fields(module.representation.time_reference, store)
    return datamodule_from_config(
        dataset,
        path=path,
        hit_fields=(*module.representation.hit_fields, *task.hit_fields, *extra_hit_fields),
        target_fields=(*target_fields, *aux_fields, *time_fields),
        predict_split=split,
    )


def file_attributes(ckpt: Checkpoint, module: Any, split: str, data_path: Path) -> dict[str, Any]:
    task = module.task
    return {
        "sections": task.prediction_sections(),
        "task": task.name,
        "task_kind": task.kind,
        "detector": module.detector.name,
        "model": ckpt.name_of("model"),
        "checkpoint": str(ckpt.path),
        "split": split,
        "dataset": str(Path(data_path).resolve()),
        "provenance": ckpt.provenance,
        "config": ckpt.config,
    }


def dataset_attributes(sections: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Class names on the class-probability and label datasets."""
    out: dict[str, dict[str, Any]] = {}
    for s in sections:
        if "class_names" in s:
            for field in (f"{PRED}{s['prefix']}probabilities", f"{TRUE}{s['prefix']}labels"):
                out[field] = {"class_names": s["class_names"]}
    return out


def check_training_events(
    datamodule: EventDataModule, ckpt: Checkpoint, split: str, allow: bool
) -> dict[str, Any]:
    """Refuse to score events the model was trained on (same event source and id, whatever the file and
    split), unless ``allow``; return the file attributes saying which events were predicted."""
    rows = datamodule.split_indices(split)
    keys = event_keys(datamodule.store, rows)
    seen = 0 if ckpt.train_keys is None else int(np.isin(keys, ckpt.train_keys).sum())
    if seen and not allow:
        raise DataError(
            f"{seen} of the {len(keys)} {split} events of {datamodule.path} are events {ckpt.describe()} "
            "was trained on; predict other events, or set allow_training_events=true to score them anyway"
        )
    if seen:
        log.warning(
            "%d of the %d predicted events were in the training split (allow_training_events=true)",
            seen,
            len(keys),
        )
    if ckpt.train_keys is None:
        log.warning("%s records no training events (an older checkpoint): overlap not checked", ckpt.path)
    return {"events_digest": keys_digest(keys), "n_training_events": seen, "allow_training_events": allow}


def warn_out_of_distribution(path: Path, threshold: float) -> float:
    """Warn with the fraction of events whose ``ood_score`` exceeds ``threshold``; return that fraction."""
    import h5py

    with h5py.File(path, "r") as f:
        if "ood_score" not in f:
            return 0.0
        score = f["ood_score"][()]
    fraction = float((score > threshold).mean()) if len(score) else 0.0
    if fraction > 0:
        log.warning(
            "%.1f%% of the %d events have an out-of-distribution score above %g (median %.3g): "
            "their inputs lie far outside the training statistics; check the units, the time origin "
            "(model.representation.time_reference) and the detector before trusting these predictions",
            100 * fraction,
            len(score),
            threshold,
            float(np.median(score)),
        )
    return fraction


def predict(cfg: DictConfig) -> Path | None:
    """Predict as configured; returns the predictions file on rank zero (``None`` on other ranks)."""
    tidy_logging()  # Lightning, imported by now, added a second handler of its own
    split = cfg.get("split", "test")
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {list(SPLITS)}, got '{split}'")
    out_dir = Path(cfg.paths.output_dir)
    output = check_output(cfg.get("output"), bool(cfg.get("overwrite", False)))
    target = out_dir / FILE_NAME
    check_output(target, bool(cfg.get("overwrite", False)))

    ckpt = load_checkpoint(cfg.get("ckpt_path"), cfg.get("trust") or ())
    if cfg.get("dataset") is not None and cfg.get("detector") is None:
        with open_dict(cfg):  # a dataset option that follows the detector (toy) needs one to resolve
            cfg.detector = OmegaConf.create(ckpt.config["detector"])
    dataset = dataset_config(cfg, ckpt)
    data_path = resolve_data_path(str(dataset.path), ckpt)
    module = build_module(ckpt)
    module.task.check_predictable(ckpt.describe())
    with open_store(data_path) as store:
        aux_fields = check_store(store, module, ckpt, module.representation.hit_fields)
        extra = module.task.prediction_hit_fields(store.fields)
    datamodule = make_predict_datamodule(dataset, data_path, module, split, aux_fields, extra)
    events = check_training_events(datamodule, ckpt, split, bool(cfg.get("allow_training_events", False)))

    sections = module.task.prediction_sections()
    writer = PredictionWriter(
        target,
        task=module.task,
        detector=module.detector,
        attrs=file_attributes(ckpt, module, split, data_path) | events,
        dataset_attrs=dataset_attributes(sections),
        overwrite=bool(cfg.get("overwrite", False)),
        object_types=module.task.prediction_objects,
    )
    trainer: pl.Trainer = instantiate(
        cfg.trainer, callbacks=[writer], logger=False, enable_model_summary=False
    )
    if trainer.is_global_zero:
        save_config(cfg, out_dir)
    log.info("predicting the %s split of %s with %s", split, data_path, ckpt.describe())
    with warnings.catch_warnings():
        # recoml's batch samplers and on_after_batch_transfer are deliberate; Lightning warns about both.
        warnings.filterwarnings("ignore", message=".*(infer the batch indices|on_after_batch_transfer).*")
        trainer.predict(module, datamodule=datamodule, return_predictions=False)
    if not trainer.is_global_zero:
        return None
    warn_out_of_distribution(target, float(cfg.get("ood_threshold", 9.0)))
    if output is not None:
        copy_atomic(target, output)
        log.info("predictions: %s (copied to %s)", target, output)
    else:
        log.info("predictions: %s", target)
    return output or target
