"""``python -m recoml.convert input='data/*.root' convert=<mapping> output=events.h5``: real data (ROOT files
through uproot, TrackML CSV) into the event store."""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from recoml.utils.cli import CONFIG_PATH, report_errors, run, save_config

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="convert")
@report_errors
def main(cfg: DictConfig) -> None:
    from recoml.conversion.run import convert_from_config

    save_config(cfg, cfg.paths.output_dir)
    output = convert_from_config(cfg)
    log.info("wrote %s", output)


if __name__ == "__main__":
    run(main)
