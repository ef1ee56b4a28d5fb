"""``python -m recoml.predict ckpt_path=... [split=test dataset=... trainer=ddp_sim output=...]``: run a
checkpoint over a dataset split and write ``predictions.h5`` in the run directory."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from recoml.utils.cli import CONFIG_PATH, report_errors, run


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="predict")
@report_errors
def main(cfg: DictConfig) -> None:
    from recoml.prediction.run import predict

    predict(cfg)


if __name__ == "__main__":
    run(main)
