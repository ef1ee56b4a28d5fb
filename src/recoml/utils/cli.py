"""Entry-point plumbing shared by every ``python -m recoml.<verb>``."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from recoml.conf import CONF_DIR, CONFIG_MODULE, CONFIG_PATH
from recoml.errors import RecomlError
from recoml.io.atomic import write_text

log = logging.getLogger("recoml")

__all__ = ["CONFIG_PATH", "CONF_DIR", "compose_entry", "recoml_cause", "report_errors", "save_config"]


_STARTED: list[bool] = []  # set once the task function runs: Hydra composed the config


def report_errors(fn: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """Turn a :class:`RecomlError` into one clear line on stderr and exit code 2, not a traceback."""

    @functools.wraps(fn)
    def wrapper(cfg: DictConfig) -> Any:
        _STARTED.append(True)
        try:
            return fn(cfg)
        except Exception as exc:
            err = recoml_cause(exc)
            if err is None:
                raise
            log.error("%s", err)
            sys.stderr.write(f"error: {err}\n")
            sys.exit(2)

    return wrapper


def run(main: Callable[[], Any]) -> None:
    """Run a Hydra entry point. A config that does not compose (an unknown key, a bad override, a missing
    option) is bad input like any other: exit code 2 instead of Hydra's 1 (Hydra has printed why)."""
    try:
        main()
    except SystemExit as exc:
        if exc.code == 1 and not _STARTED:
            raise SystemExit(2) from None
        raise


def recoml_cause(exc: BaseException | None) -> RecomlError | None:
    """The RecomlError behind ``exc``: itself, or the cause Hydra's ``instantiate`` wrapped it in."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, RecomlError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def save_config(cfg: DictConfig, directory: str | Path, name: str = "config.yaml") -> Path:
    """Resolved config next to the outputs (Hydra keeps the unresolved one in .hydra/)."""
    return write_text(Path(directory) / name, OmegaConf.to_yaml(cfg, resolve=True))


def compose_entry(config_name: str, run_dir: str | Path, overrides: Sequence[str] = ()) -> DictConfig:
    """The packaged ``<config_name>.yaml`` composed with command-line ``overrides`` and its run directory
    ``run_dir``: what ``python -m recoml.<verb>`` would run, for calling the same function from Python."""
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        cfg = compose(config_name=config_name, return_hydra_config=True, overrides=list(overrides))
    with open_dict(cfg):
        cfg.paths.output_dir = str(run_dir)
        cfg.hydra.runtime.output_dir = str(run_dir)
        cfg.hydra.job.num = 0
    HydraConfig().set_config(cfg)
    return cfg
