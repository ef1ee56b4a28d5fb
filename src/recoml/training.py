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
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig

from recoml.callbacks import SignalCheckpoint
from recoml.data.identity import (
    Fingerprint,
    check_store_detector,
    detector_fingerprint,
    event_keys,
    keys_digest,
    store_identity,
)
from recoml.data.normalization import time_reference_fields
from recoml.data.prepare import ensure_dataset, make_datamodule
from recoml.data.store import open_store
from recoml.errors import ConfigError
from recoml.io import provenance
from recoml.io.checkpoint import (
    check_targets,
    iter_targets,
    read_checkpoint,
    state_mismatch,
    stored_config,
    trusting,
)
from recoml.io.runs import resumable_checkpoints, run_identity, runs_root
from recoml.tasks.module import RecoModule
from recoml.utils.cli import save_config, tidy_logging
from recoml.utils.config import config_dict, instantiate_group
from recoml.utils.config_checks import check_config_values

log = logging.getLogger(__name__)


def resolve_checkpoint(ckpt_path: str | None, cfg: DictConfig) -> str | None:
    """``last`` -> this run's last.ckpt (``hydra.run.dir`` is the resumed run's directory, see
    :func:`recoml.io.runs.resume_dir`), else the newest last.ckpt among earlier runs of the same
    experiment, model, task and detector; debug runs are never resumed."""
    if ckpt_path in (None, "", "none"):
        return None
    if ckpt_path != "last":
        return str(ckpt_path)  # checked by check_checkpoint_matches
    here = Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt"
    if here.exists() and not cfg.get("debug_run", False):
        log.info("ckpt_path=last: resuming this run's %s", here)
        return str(here)
    candidates = resumable_checkpoints(cfg)
    if not candidates:
        wanted = ", ".join(f"{k}={v}" for k, v in run_identity(cfg).items())
        raise ConfigError(
            f"ckpt_path=last: no last.ckpt under {runs_root(cfg)} from a run with {wanted} (debug runs are "
            "never resumed); start without ckpt_path or give the checkpoint's path"
        )
    log.info(
        "ckpt_path=last: resuming %s (the newest of %d runs with the same identity)",
        candidates[0],
        len(candidates),
    )
    return str(candidates[0])


#: The config groups :class:`RecoModule` builds a model from (what ``load_model`` would build from a file).
MODEL_GROUPS = ("detector", "task", "model", "augment", "metrics", "optimizer", "scheduler")


def check_checkpoint_matches(path: str, cfg: DictConfig, detector: Any = None, module: Any = None) -> None:
    """A checkpoint from another task, model or detector cannot resume this run: say so before loading it.
    Its stored config is never built here, but a model config (:data:`MODEL_GROUPS`) naming a target
    outside the allowlist (a checkpoint ``load_model`` would refuse) is refused as well, unless the run's
    ``trust`` names it or this run's own config builds it anyway; the run's own plugins (callbacks,
    loggers) stay out of that check."""
    raw = read_checkpoint(path)  # the safe loader: tensors and plain values only; nothing is built
    saved = stored_config(raw, path)
    own = [str(target) for _, target in iter_targets(config_dict(cfg))]
    model_config = {group: saved[group] for group in MODEL_GROUPS if group in saved}
    check_targets(model_config, path, [*(cfg.get("trust") or ()), *own])
    for group in ("task", "model", "detector"):
        mine, theirs = cfg[group].get("name"), (saved.get(group) or {}).get("name")
        if theirs is not None and mine != theirs:
            raise ConfigError(
                f"checkpoint {path} was trained for {group}={theirs}, this run is {group}={mine}"
            )
    recorded = Fingerprint.parse(((raw.get("recoml") or {}).get("data_identity") or {}).get("fingerprint"))
    current = detector_fingerprint(detector) if detector is not None else None
    if recorded is not None and current is not None and recorded != current:
        raise ConfigError(
            f"checkpoint {path} was trained on a detector with {recorded}, "
            f"this run's detector={cfg.detector.name} has {current}"
        )
    mismatch = state_mismatch(module.state_dict(), raw["state_dict"]) if module is not None else ""
    if mismatch:
        raise ConfigError(
            f"checkpoint {path} does not fit this run's model={cfg.model.get('name')} ({mismatch}); resume "
            "with the settings it was trained with"
        )


def data_identity(store: Any, train_rows: Any, detector: Any, split_path: Any) -> tuple[dict[str, Any], Any]:
    """What the checkpoint records about its data (``provenance["data_identity"]``) and the keys of the
    events it trains on (so prediction can refuse to score them)."""
    keys = event_keys(store, train_rows)
    fp = detector_fingerprint(detector)
    ident = store_identity(store.attrs)
    return {
        "store": str(Path(store.path).resolve()),
        "detector": detector.name,
        "fingerprint": fp.as_attr() if fp else None,
        "time_origin": ident["time_origin"],
        "energy_kind": ident["energy_kind"],
        "n_events": len(store),
        "split_path": None if split_path is None else str(split_path),
        "n_train_events": len(keys),
        "train_events_digest": keys_digest(keys),
    }, keys


def validate_training_store(path: Path, module: RecoModule) -> None:
    """Every hit valid (PMT ids in range, finite values): a full vectorised scan, once per store version
    (cached), so training never sees a bad hit."""
    with open_store(path) as store:
        n_pmts = module.detector.n_sensors if "hit_pmt" in store.fields else None
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
    tidy_logging()  # Lightning, imported by now, added a second handler of its own
    check_config_values(cfg)
    with claim_run_dir(Path(cfg.paths.output_dir)):
        return _train(cfg)


def _train(cfg: DictConfig) -> dict[str, float]:
    pl.seed_everything(cfg.seed, workers=True)
    data_path = ensure_dataset(cfg)
    config = config_dict(cfg)
    config.pop("hydra", None)  # present when composed with return_hydra_config (tests, HPO)
    trust = config.pop("trust", None) or ()  # the command line's, never stored: a file cannot widen it
    prov = provenance.record([data_path])
    out_dir = Path(cfg.paths.output_dir)

    with trusting(trust):  # checkpoints the model reads while built (a tracking stage's embedding)
        module = RecoModule(config, prov)
    with open_store(data_path) as store:  # the store's conventions decide what the task converts
        module.task.adopt_conventions(store.attrs)
        time_fields = time_reference_fields(module.representation.time_reference, store)
    validate_training_store(data_path, module)
    datamodule = make_datamodule(cfg, module.representation, module.task, time_fields)
    datamodule.setup("fit")
    assert datamodule.store is not None  # opened by setup
    check_store_detector(data_path, datamodule.store.attrs, module.detector, f"detector={cfg.detector.name}")
    identity, keys = data_identity(
        datamodule.store, datamodule.split_indices("train"), module.detector, datamodule.split_path
    )
    prov["data_identity"] = identity
    module.hparams["provenance"] = prov
    module.train_event_keys = torch.from_numpy(keys)
    ckpt_path = resolve_checkpoint(cfg.get("ckpt_path"), cfg)
    if ckpt_path:
        check_checkpoint_matches(ckpt_path, cfg, module.detector, module)
    if cfg.get("train", True) and not ckpt_path:
        module.fit_statistics(
            datamodule.statistics_sample(cfg.get("normalization_events"), seed=int(cfg.seed))
        )
    if cfg.get("compile"):
        # torch.compile of a Module returns an OptimizedModule (a Module); the stub says a plain callable.
        module.net = torch.compile(module.net)  # type: ignore[assignment]

    callbacks = instantiate_group(cfg.get("callbacks"))
    loggers = instantiate_group(cfg.get("logger"))
    trainer: pl.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    if trainer.strategy.root_device.type == "cpu":  # on a GPU the inputs are built on the device
        datamodule.build_in_workers(module.representation, module.augment)
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
    if isinstance(ckpt, ModelCheckpoint) and ckpt.best_model_path:
        log.info("best checkpoint: %s", ckpt.best_model_path)
    last = out_dir / "checkpoints" / "last.ckpt"
    if last.exists():
        log.info("last checkpoint: %s (resume with ckpt_path=last)", last)
    log.info("metrics: %s", out_dir / "metrics.json")
    for name in sorted(k for k in metrics if k.startswith("test/")):
        log.info("  %-28s %.4f", name, metrics[name])
