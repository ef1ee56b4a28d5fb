"""``python -m recoml.simulate detector=wcte n_events=20000 particles=[e-,mu-,gamma]``: toy events to an
event store plus a split file."""

from __future__ import annotations

import logging

import hydra
from hydra.utils import get_method, instantiate
from omegaconf import DictConfig

from recoml.utils.cli import CONFIG_PATH, report_errors, run, save_config
from recoml.utils.config import config_dict

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="simulate")
@report_errors
def main(cfg: DictConfig) -> None:
    from recoml.sim.to_store import simulate_to_store

    save_config(cfg, cfg.paths.output_dir)
    detector = instantiate(cfg.detector)
    if getattr(detector, "kind", None) == "tracker":  # helices in a solenoid; options in the tracker block
        from recoml.sim.tracker import simulate_tracker_to_store

        output, splits = simulate_tracker_to_store(
            detector,
            cfg.output,
            n_events=cfg.n_events,
            seed=cfg.seed,
            split_path=cfg.split_path,
            fractions=tuple(cfg.fractions),
            split_seed=cfg.split_seed,
            overwrite=cfg.overwrite,
            config=config_dict(cfg),
            **config_dict(cfg.tracker),
        )
        log.info("wrote %s and %s", output, splits)
        return
    if getattr(detector, "simulator", None):  # a detector family with its own toy simulation
        simulate_to_store = get_method(detector.simulator)
    output, splits = simulate_to_store(
        detector=detector,
        output=cfg.output,
        split_path=cfg.split_path,
        fractions=tuple(cfg.fractions),
        split_seed=cfg.split_seed,
        n_events=cfg.n_events,
        particles=list(cfg.particles),
        energy_range=tuple(cfg.energy_range),
        fiducial_margin=cfg.fiducial_margin,
        seed=cfg.seed,
        n_workers=cfg.n_workers,
        chunk_size=cfg.chunk_size,
        overwrite=cfg.overwrite,
        physics=config_dict(cfg.physics),
        config=config_dict(cfg),
    )
    log.info("wrote %s and %s", output, splits)


if __name__ == "__main__":
    run(main)
