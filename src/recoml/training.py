"""The training function behind ``python -m recoml.train`` (also called by sweeps and HPO).

Order of work: make sure the data exists (simulate the toy set on first use), build the DataModule and
the module, fit normalization and target statistics on the training split, then fit and test with the
trainer, callbacks and loggers from the config. Results, resolved config and provenance are written to
the Hydra run directory.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from hydra.utils import instantiate
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from recoml.callbacks import SignalCheckpoint
from recoml.data.prepare import ensure_dataset, make_datamodule
from recoml.data.store import open_store
from recoml.data.validate import check_store_detector
from recoml.errors import ConfigError
from recoml.io import provenance
from recoml.io.checkpoint import read_checkpoint, stored_config
from recoml.tasks.module import RecoModule
from recoml.utils.cli import save_config
from recoml.utils.config_checks import check_config_values

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
        return str(ckpt_path)  # checked by check_checkpoint_matches
    here = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    if here.exists():
        return str(here)
    runs = Path(cfg.paths.log_dir) / cfg.task_name
    candidates = sorted(runs.glob("**/checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    if not candidates:
        raise ConfigError(f"ckpt_path=last: no last.ckpt under {runs}; start without ckpt_path")
    return str(candidates[-1])


def check_checkpoint_matches(path: str, cfg: DictConfig) -> None:
    """A checkpoint from another task or detector cannot resume this run: say so before loading it.

    Read with the safe loader (tensors and plain values only); the stored config is compared, never built."""
    saved = stored_config(read_checkpoint(path), path)
    for group in ("task", "detector"):
        mine, theirs = cfg[group].get("name"), (saved.get(group) or {}).get("name")
        if theirs is not None and mine != theirs:
            raise ConfigError(
                f"checkpoint {path} was trained for {group}={theirs}, this run is {group}={mine}"
            )


def check_training_store(path: Path, module: RecoModule) -> None:
    """The store must be the model's detector's and every hit valid (PMT ids in range, finite values):
    a full vectorised scan, once per store version (cached), so training never sees a bad hit."""
    detector = module.detector
    with open_store(path) as store:
        model = module.hparams["config"]["model"].get("name")
        check_store_detector(store, detector, f"this run (model={model})", "trains")
        n_pmts = getattr(detector, "n_pmts", None) if "hit_pmt" in store.fields else None
        store.validate(n_pmts=n_pmts)


def preempted_exit_code(callbacks: list[Any]) -> int:
    """128 + the signal number (143 for SIGTERM, 138 for SIGUSR1), what a shell reports for a process that
    signal stopped: a scheduler must not mistake a pre-empted run (last.ckpt saved) for a finished one."""
    received = next((c.received for c in callbacks if isinstance(c, SignalCheckpoint) and c.received), None)
    return 128 + int(received or signal.SIGTERM)


@contextmanager
def claim_run_dir(out_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the run directory while training (rank zero only: DDP ranks share it).

    Two trainings in one directory would mix checkpoints, configs and metrics; the second is refused in
    one sentence. The lock is released when the run ends, also when the process dies (flock)."""
    ranks = (os.environ.get(k, "0") for k in ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID"))
    if any(r != "0" for r in ranks):
        yield
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / ".recoml-run.lock", "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            raise ConfigError(
                f"run directory {out_dir} is in use by another training ({holder}); two runs must not "
                "share it (give each its own hydra.run.dir)"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()}")
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def train(cfg: DictConfig) -> dict[str, float]:
    """Train (and test) as configured; returns the final metrics as floats."""
    check_config_values(cfg)
    with claim_run_dir(Path(cfg.paths.output_dir)):
        return _train(cfg)


def _train(cfg: DictConfig) -> dict[str, float]:
    pl.seed_everything(cfg.seed, workers=True)
    data_path = ensure_dataset(cfg)
    config = OmegaConf.to_container(cfg, resolve=True)
    config.pop("hydra", None)  # present when composed with return_hydra_config (tests, HPO)
    prov = provenance.record([data_path])
    out_dir = Path(cfg.paths.output_dir)

    module = RecoModule(config, prov)
    check_training_store(data_path, module)
    datamodule = make_datamodule(cfg, module.task)
    ckpt_path = resolve_checkpoint(cfg.get("ckpt_path"), cfg)
    if ckpt_path:
        check_checkpoint_matches(ckpt_path, cfg)
    if cfg.get("train", True) and not ckpt_path:
        datamodule.setup("fit")
        module.fit_statistics(datamodule.statistics_batches(cfg.get("normalization_batches")))
    if cfg.get("compile"):
        module.net = torch.compile(module.net)

    callbacks = instantiate_group(cfg.get("callbacks"))
    loggers = instantiate_group(cfg.get("logger"))
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    if trainer.is_global_zero:
        save_config(cfg, out_dir)
        provenance.write_json(out_dir / "provenance.json", prov)

    if cfg.get("train", True):
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        except SIGTERMException:
            raise SystemExit(preempted_exit_code(callbacks)) from None
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    if cfg.get("test", True):
        best = getattr(trainer.checkpoint_callback, "best_model_path", "") if cfg.get("train", True) else ""
        test_ckpt = best or (ckpt_path if not cfg.get("train", True) else None)
        results = trainer.test(
            module, datamodule=datamodule, ckpt_path=test_ckpt or None, verbose=False, weights_only=True
        )
        metrics |= {k: float(v) for k, v in (results[0] if results else {}).items()}
    _report(trainer, cfg, metrics)
    return metrics


@rank_zero_only
def _report(trainer: pl.Trainer, cfg: DictConfig, metrics: dict[str, float]) -> None:
    out_dir = Path(cfg.paths.output_dir)
    provenance.write_json(out_dir / "metrics.json", metrics)
    ckpt = trainer.checkpoint_callback
    log.info("run directory: %s", out_dir)
    if ckpt is not None and ckpt.best_model_path:
        log.info("best checkpoint: %s", ckpt.best_model_path)
    last = out_dir / "checkpoints" / "last.ckpt"
    if last.exists():
        log.info("last checkpoint: %s (resume with ckpt_path=last)", last)
    log.info("metrics: %s", out_dir / "metrics.json")
    for name in sorted(k for k in metrics if k.startswith("test/")):
        log.info("  %-28s %.4f", name, metrics[name])
