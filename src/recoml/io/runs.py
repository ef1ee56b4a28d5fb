"""Training run directories: which earlier run ``ckpt_path=last`` resumes.

A run is resumable by another when both have the same experiment, model, task and detector (read from
each run's resolved ``config.yaml``); debug runs (``debug=...``: one batch, a few batches, overfitting)
are never resumed, and live in their own tree (``<log_dir>/debug/``) besides.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

#: Config entries two runs must share for one to resume the other's checkpoint.
RUN_IDENTITY = ("experiment_name", "model.name", "task.name", "detector.name")


def run_identity(cfg: Any) -> dict[str, Any]:
    """The experiment, model, task and detector of a run's config (DictConfig or plain dict)."""
    conf = cfg if isinstance(cfg, DictConfig) else OmegaConf.create(cfg)
    return {key: OmegaConf.select(conf, key, default=None) for key in RUN_IDENTITY}


def runs_root(cfg: Any) -> Path:
    """Where the runs ``ckpt_path=last`` looks at live: ``<log_dir>/<task_name>`` (never the debug tree)."""
    return Path(str(cfg.paths.log_dir)) / str(cfg.task_name)


def resumable_checkpoints(cfg: Any) -> list[Path]:
    """``last.ckpt`` of every earlier run under :func:`runs_root` with ``cfg``'s identity, debug runs left
    out, newest first."""
    mine = run_identity(cfg)
    found = []
    for path in runs_root(cfg).glob("**/checkpoints/last.ckpt"):
        run_config = path.parent.parent / "config.yaml"
        if not run_config.is_file():
            continue
        theirs = OmegaConf.load(run_config)
        if not OmegaConf.select(theirs, "debug_run", default=False) and run_identity(theirs) == mine:
            found.append(path)
    return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)


def resume_dir(default: str, *, _root_: DictConfig) -> str:
    """``hydra.run.dir``'s resolver: with ``ckpt_path=last`` a run continues in the directory of the run it
    resumes (its checkpoints, metrics.csv and curves carry on there); otherwise, for a debug run, or with
    nothing to resume (training then says so in one sentence), ``default``, a new directory."""
    if _root_.get("ckpt_path") != "last" or _root_.get("debug_run", False):
        return default
    found = resumable_checkpoints(_root_)
    return str(found[0].parent.parent) if found else default
