"""Hydra's compose API for sweeps: a trial's config from the study's overrides plus the trial's own, run
under the Hydra state a ``python -m recoml.train`` job would have (so ``${hydra:...}`` resolves)."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_module
from hydra.conf import HydraConf
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import OmegaConfBaseException

from recoml.conf import CONFIG_MODULE
from recoml.errors import ConfigError
from recoml.sweeps.space import format_value


def compose(config_name: str, overrides: Sequence[str] = (), what: str = "config") -> DictConfig:
    """Compose ``<config_name>.yaml`` with ``overrides``, the ``hydra`` node included.

    Inside a ``@hydra.main`` app the app's search path is used; elsewhere (tests, notebooks) the
    packaged ``recoml.conf`` (plus any ``hydra.searchpath`` in ``overrides``). Hydra's composition errors
    become a :class:`ConfigError` that says ``what`` failed.
    """
    try:
        if GlobalHydra.instance().is_initialized():
            return hydra_compose(config_name, overrides=list(overrides), return_hydra_config=True)
        with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
            return hydra_compose(config_name, overrides=list(overrides), return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as err:
        reason = str(err).strip().splitlines()[0]
        raise ConfigError(f"{what}: cannot compose {config_name}.yaml: {reason}") from err


@contextmanager
def as_job(cfg: DictConfig, output_dir: str | Path, job_num: int = 0) -> Iterator[DictConfig]:
    """Set Hydra's run-time state for ``cfg`` (as ``run_job`` does) and yield it without its ``hydra`` node.

    The previous Hydra state (the study's own) is restored on exit.
    """
    previous = HydraConfig.instance().cfg
    cfg = copy.deepcopy(cfg)
    with read_write(cfg.hydra), open_dict(cfg.hydra):
        cfg.hydra.runtime.output_dir = str(Path(output_dir).resolve())
        cfg.hydra.job.num = job_num
    HydraConfig.instance().set_config(cfg)
    task_cfg = copy.deepcopy(cfg)
    with read_write(task_cfg), open_dict(task_cfg):
        del task_cfg["hydra"]
    try:
        yield task_cfg
    finally:
        HydraConfig.instance().cfg = previous


def has_key(cfg: DictConfig, key: str) -> bool:
    """Whether ``key`` (dotted) names a node of ``cfg``, even one whose value is null or missing."""
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key, throw_on_resolution_failure=False) if parent_key else cfg
    return isinstance(parent, DictConfig) and leaf in parent


def user_search_path(hydra_cfg: HydraConf | DictConfig) -> list[str]:
    """The study's own config dirs (``--config-dir`` and ``hydra.searchpath``) as one override, so that
    every trial, in this process or a subprocess, and the best-trial export compose from the same tree."""
    dirs = [
        f"{s.schema}://{s.path}" for s in hydra_cfg.runtime.config_sources if s.provider == "command-line"
    ]
    dirs += [str(d) for d in hydra_cfg.searchpath or []]
    return [f"hydra.searchpath={format_value(dirs)}"] if dirs else []
