"""``python -m recoml.evaluate predictions=<file> | predictions=[a,b] labels=[cnn,gnn]``: metrics, plots
(PNG + PDF), report.md and metrics.json in the run directory."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from recoml.utils.cli import CONFIG_PATH, report_errors, run


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="evaluate")
@report_errors
def main(cfg: DictConfig) -> None:
    from recoml.evaluation import evaluate

    evaluate(cfg)


if __name__ == "__main__":
    run(main)
