"""``python -m recoml.simulate detector=wcte n_events=20000 particles=[e-,mu-,gamma]``: toy events to an
event store plus a split file."""

from __future__ import annotations

import logging

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig

from recoml.contracts.simulator import simulator_of
from recoml.errors import ConfigError
from recoml.utils.cli import CONFIG_PATH, report_errors, run, save_config
from recoml.utils.config import config_dict

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="simulate")
@report_errors
def main(cfg: DictConfig) -> None:
    save_config(cfg, cfg.paths.output_dir)
    detector = instantiate(cfg.detector)
    options = cfg.simulation.get(detector.family)
    if options is None:
        raise ConfigError(
            f"simulation: no options for the {detector.family} family of detector={detector.name}; "
            f"simulate.yaml has {sorted(cfg.simulation)}"
        )
    output, splits = simulator_of(detector)(
        detector,
        cfg.output,
        n_events=cfg.n_events,
        seed=cfg.seed,
        split_path=cfg.split_path,
        fractions=tuple(cfg.fractions),
        split_seed=cfg.split_seed,
        overwrite=cfg.overwrite,
        config=config_dict(cfg),
        **config_dict(options),
    )
    log.info("wrote %s and %s", output, splits)


if __name__ == "__main__":
    run(main)
