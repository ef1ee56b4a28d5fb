"""``python -m recoml.display data=<store> | predictions=<file or run dir> [events=[0,5]] [detector=<name>]``:
event displays (PNG + PDF per view, an interactive 3D HTML page per event) and ``displays.md`` in the run
directory."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from recoml.utils.cli import CONFIG_PATH, report_errors


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="display")
@report_errors
def main(cfg: DictConfig) -> None:
    from recoml.evaluation.displays import display

    display(cfg)


if __name__ == "__main__":
    main()
