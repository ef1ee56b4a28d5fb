"""Entry-point plumbing shared by every ``python -m recoml.<verb>``."""

from __future__ import annotations

import functools
import logging
import shutil
import sys
from collections.abc import Callable, Iterable, Sequence
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

__all__ = [
    "CONFIG_PATH",
    "CONF_DIR",
    "compose_entry",
    "recoml_cause",
    "remove_if_untouched",
    "report_errors",
    "save_config",
    "tidy_logging",
]

#: What Hydra puts in a run directory before the task runs, and the run lock of training: a directory
#: holding nothing else was never used.
BOOKKEEPING = (".hydra", ".recoml-run.lock")


class _NoAdvertising(logging.Filter):
    """Drops Lightning's "💡 Tip: ... try installing litlogger/litmodels" lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).lstrip().startswith("\N{ELECTRIC LIGHT BULB}")


_NO_ADVERTISING = _NoAdvertising()


def tidy_logging() -> None:
    """One line per message, and no advertising, once Hydra has configured the root logger.

    Lightning adds a stderr handler of its own to the ``lightning`` logger and still propagates to the
    root, so each of its INFO lines printed twice (stdout through Hydra, stderr through Lightning): its own
    handlers go when the root has any. Its rank-zero loggers drop the litlogger/litmodels tips.
    """
    if logging.getLogger().handlers:
        for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
            logger = logging.getLogger(name)
            for handler in list(logger.handlers):
                logger.removeHandler(handler)
            logger.propagate = True
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(_NO_ADVERTISING)


def remove_if_untouched(run_dir: str | Path | None, logs: Iterable[str | Path] | None = None) -> bool:
    """Delete ``run_dir`` when it holds only Hydra's bookkeeping and this command's own log files
    (``logs``, default: the root logger's file handlers) — a run that failed before writing anything;
    True when it did. A directory holding anything else (an HPO study's journal, an earlier run's
    outputs) and the working directory or its parents are never touched."""
    if not run_dir:
        return False
    run_dir = Path(run_dir).resolve()
    if not run_dir.is_dir() or run_dir in (Path.cwd(), *Path.cwd().parents):
        return False
    if logs is None:
        logs = [h.baseFilename for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    own_logs = {Path(p).resolve() for p in logs}
    for entry in run_dir.iterdir():
        if entry.name in BOOKKEEPING or (entry.is_file() and entry.resolve() in own_logs):
            continue
        return False
    shutil.rmtree(run_dir, ignore_errors=True)
    return True


def _run_dir() -> str | None:
    from hydra.core.hydra_config import HydraConfig

    return str(HydraConfig.get().runtime.output_dir) if HydraConfig.initialized() else None


_STARTED: list[bool] = []  # set once the task function runs: Hydra composed the config


def report_errors(fn: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """Turn a :class:`RecomlError` into one clear line on stderr and exit code 2, not a traceback; a run
    directory the failed command never wrote to is removed (see :func:`remove_if_untouched`)."""

    @functools.wraps(fn)
    def wrapper(cfg: DictConfig) -> Any:
        _STARTED.append(True)
        tidy_logging()
        try:
            return fn(cfg)
        except Exception as exc:
            remove_if_untouched(_run_dir())
            err = recoml_cause(exc)
            if err is None:
                raise
            _log_to_files(f"error: {err}")
            sys.stderr.write(f"error: {err}\n")
            sys.exit(2)

    return wrapper


def _log_to_files(message: str) -> None:
    """An ERROR record for the log files only: the terminal gets the message once, on stderr."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "%s", (message,), None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


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
