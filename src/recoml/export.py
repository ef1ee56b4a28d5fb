"""``python -m recoml.export ckpt_path=... format=onnx [quantize=int8] [output=model.onnx]``: ONNX with the
normalization inside, named inputs/outputs and metadata, checked against PyTorch on real batches."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from recoml.utils.cli import CONFIG_PATH, report_errors, run


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="export")
@report_errors
def main(cfg: DictConfig) -> None:
    from recoml.exporting.run import export

    export(cfg)


if __name__ == "__main__":
    run(main)
