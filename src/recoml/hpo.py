"""``python -m recoml.hpo hparams_search=pid_cnn hpo.n_trials=50 [overrides]``: an Optuna study over
training configs (guide: docs/hpo.md). Re-running the same command resumes the study."""

from __future__ import annotations

import logging
import sys

import hydra
from omegaconf import DictConfig

from recoml.utils.cli import CONFIG_PATH, report_errors, run, save_config

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="hpo")
@report_errors
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    from recoml.sweeps.compose import user_search_path
    from recoml.sweeps.study import run_study

    save_config(cfg, cfg.paths.output_dir, "hpo_config.yaml")
    hydra_cfg = HydraConfig.get()
    try:
        study = run_study(cfg, [*user_search_path(hydra_cfg), *hydra_cfg.overrides.task])
    except KeyboardInterrupt:
        log.warning("interrupted: finished trials are kept; run the same command again to resume the study")
        sys.exit(130)
    complete = [t for t in study.trials if t.value is not None]
    return study.best_value if complete else None


if __name__ == "__main__":
    run(main)
