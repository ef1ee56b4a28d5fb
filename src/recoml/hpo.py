"""``python -m recoml.hpo hparams_search=pid_cnn hpo.n_trials=50 [overrides]``: an Optuna study over
training configs (guide: docs/hpo.md). Re-running the same command resumes the study."""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

from recoml.utils.cli import CONF_DIR, report_errors, run, save_config

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="hpo")
@report_errors
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    from recoml.sweeps.study import run_study

    save_config(cfg, cfg.paths.output_dir, "hpo_config.yaml")
    overrides = HydraConfig.get().overrides
    # Trials are composed from the same overrides; a search path given on the command line must follow.
    searchpath = [o for o in overrides.hydra if o.split("=", 1)[0].lstrip("+") == "hydra.searchpath"]
    try:
        study = run_study(cfg, [*searchpath, *overrides.task])
    except KeyboardInterrupt:
        log.warning("interrupted: finished trials are kept; run the same command again to resume the study")
        sys.exit(130)
    complete = [t for t in study.trials if t.value is not None]
    return study.best_value if complete else None


if __name__ == "__main__":
    run(main)
