"""``python -m recoml.train [overrides]``: train, test, and report where everything went."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from recoml.utils.cli import CONFIG_PATH, report_errors, run


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
@report_errors
def main(cfg: DictConfig) -> float | None:
    from recoml.training import train

    metrics = train(cfg)
    return metrics.get(cfg.task.monitor)


if __name__ == "__main__":
    run(main)
