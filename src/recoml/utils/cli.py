"""Entry-point plumbing shared by every ``python -m recoml.<verb>``."""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from recoml.errors import RecomlError

log = logging.getLogger("recoml")

CONF_DIR = Path(__file__).resolve().parents[3] / "conf"


def report_errors(fn: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """Turn a :class:`RecomlError` into one clear line on stderr and exit code 2, not a traceback."""

    @functools.wraps(fn)
    def wrapper(cfg: DictConfig) -> Any:
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
    path = Path(directory) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{name}.tmp")
    tmp.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    tmp.replace(path)
    return path
