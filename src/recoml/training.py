"""The training function behind ``python -m recoml.train`` (also called by sweeps and HPO).

Order of work: make sure the data exists (simulate the toy set on first use), build the DataModule and
the module, fit normalization and target statistics on the training split, then fit and test with the
trainer, callbacks and loggers from the config. Results, resolved config and provenance are written to
the Hydra run directory.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from recoml.data.prepare import ensure_dataset, make_datamodule
from recoml.errors import ConfigError
from recoml.tasks.module import RecoModule
from recoml.utils import provenance
from recoml.utils.cli import save_config
from recoml.utils.config import config_dict

log = logging.getLogger(__name__)


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Callbacks or loggers: each non-null entry with a ``_target_``."""
    if not group:
        return []
    return [instantiate(c) for c in group.values() if c is not None and "_target_" in c]


def resolve_checkpoint(ckpt_path: str | None, cfg: DictConfig) -> str | None:
    """``last`` -> this run's last.ckpt, else the newest last.ckpt among earlier runs of this task."""
    if ckpt_path in (None, "", "none"):
        return None
    if ckpt_path != "last":
        if not Path(ckpt_path).exists():
            raise ConfigError(f"ckpt_path: no checkpoint at {ckpt_path}")
        return str(ckpt_path)
    here = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    if here.exists():
        return str(here)
    runs = Path(cfg.paths.log_dir) / cfg.task_name
    candidates = sorted(runs.glob("**/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise ConfigError(f"ckpt_path=last: no last.ckpt under {runs}; start without ckpt_path")
    return str(candidates[-1])


def check_checkpoint_matches(path: str, cfg: DictConfig) -> None:
    """A checkpoint from another task or detector cannot resume this run: say so before loading it."""
    saved = (
        torch.load(path, map_location="cpu", weights_only=False).get("hyper_parameters", {}).get("config", {})
    )
    for group in ("task", "detector"):
        mine, theirs = cfg[group].get("name"), (saved.get(group) or {}).get("name")
        if theirs is not None and mine != theirs:
            raise ConfigError(
                f"checkpoint {path} was trained for {group}={theirs}, this run is {group}={mine}"
            )


def train(cfg: DictConfig) -> dict[str, float]:
    """Train (and test) as configured; returns the final metrics as floats."""
    pl.seed_everything(cfg.seed, workers=True)
    data_path = ensure_dataset(cfg)
    config = config_dict(cfg)
    config.pop("hydra", None)  # present when composed with return_hydra_config (tests, HPO)
    prov = provenance.collect([data_path])
    out_dir = Path(cfg.paths.output_dir)

    module = RecoModule(config, prov)
    datamodule = make_datamodule(cfg, module.representation, module.task)
    ckpt_path = resolve_checkpoint(cfg.get("ckpt_path"), cfg)
    if ckpt_path:
        check_checkpoint_matches(ckpt_path, cfg)
    if cfg.get("train", True) and not ckpt_path:
        datamodule.setup("fit")
        module.fit_statistics(datamodule.statistics_batches(cfg.get("normalization_batches")))
    if cfg.get("compile"):
        # torch.compile of a Module returns an OptimizedModule (a Module); the stub says a plain callable.
        module.net = torch.compile(module.net)  # type: ignore[assignment]

    callbacks = instantiate_group(cfg.get("callbacks"))
    loggers = instantiate_group(cfg.get("logger"))
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    if trainer.is_global_zero:
        save_config(cfg, out_dir)
        provenance.write_json(out_dir / "provenance.json", prov)

    if cfg.get("train", True):
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if cfg.get("test", True):
        best = getattr(trainer.checkpoint_callback, "best_model_path", "") if cfg.get("train", True) else ""
        test_ckpt = best or (ckpt_path if not cfg.get("train", True) else None)
        results = trainer.test(module, datamodule=datamodule, ckpt_path=test_ckpt or None, verbose=False)
        metrics |= {k: float(v) for k, v in (results[0] if results else {}).items()}
    _report(trainer, cfg, metrics)
    return metrics


@rank_zero_only
def _report(trainer: pl.Trainer, cfg: DictConfig, metrics: dict[str, float]) -> None:
    out_dir = Path(cfg.paths.output_dir)
    provenance.write_json(out_dir / "metrics.json", metrics)
    ckpt = trainer.checkpoint_callback
    log.info("run directory: %s", out_dir)
    if isinstance(ckpt, ModelCheckpoint) and ckpt.best_model_path:
        log.info("best checkpoint: %s", ckpt.best_model_path)
    last = out_dir / "checkpoints" / "last.ckpt"
    if last.exists():
        log.info("last checkpoint: %s (resume with ckpt_path=last)", last)
    log.info("metrics: %s", out_dir / "metrics.json")
    for name in sorted(k for k in metrics if k.startswith("test/")):
        log.info("  %-28s %.4f", name, metrics[name])
