"""``python -m recoml.train [overrides]``: train, test, and report where everything went."""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence

import hydra
from omegaconf import DictConfig

from recoml.errors import ConfigError
from recoml.utils.cli import CONFIG_PATH, report_errors, run

_SEARCH = re.compile(r"^[+~]*hparams_search=(?P<name>.*)$")


def search_space_refusal(name: str) -> str:
    """The one sentence for a search space given to train (which would run one ordinary job)."""
    return (
        f"hparams_search={name} is a search space for `recoml hpo`: run "
        f"`recoml hpo hparams_search={name} [overrides]` (recoml train runs one configuration)"
    )


def refuse_search_space(argv: Sequence[str]) -> None:
    """Exit 2 before Hydra makes a run directory when the command line chooses an hparams_search. A run
    of another primary config (an HPO trial's, ``--config-name``) is a trial of that search: left alone."""
    from recoml.sweeps.objective import TRIAL_CONFIG

    args = list(argv)
    named = [b for a, b in zip(args, args[1:]) if a in ("--config-name", "-cn")]
    named += [a.split("=", 1)[1] for a in args if a.startswith("--config-name=")]
    if TRIAL_CONFIG in named:
        return
    for arg in argv:
        found = _SEARCH.match(arg)
        if found and found["name"] not in ("", "null"):
            sys.stderr.write(f"error: {search_space_refusal(found['name'])}\n")
            raise SystemExit(2)


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="train")
@report_errors
def main(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig

    from recoml.sweeps.objective import TRIAL_CONFIG
    from recoml.training import train

    hydra_cfg = HydraConfig.get() if HydraConfig.initialized() else None
    chosen = hydra_cfg.runtime.choices.get("hparams_search") if hydra_cfg is not None else None
    # chosen by an experiment or a config of the user's; an HPO trial (its own primary config) is one trial
    if chosen and hydra_cfg is not None and hydra_cfg.job.config_name != TRIAL_CONFIG:
        raise ConfigError(search_space_refusal(chosen))
    metrics = train(cfg)
    return metrics.get(cfg.task.monitor)


if __name__ == "__main__":
    refuse_search_space(sys.argv[1:])
    run(main)
