"""Helpers shared by the training tests: compose the train config with a run directory in tmp_path."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from recoml.conf import CONF_DIR, CONFIG_MODULE

REPO = Path(__file__).resolve().parents[1]
#: Real public test files (geometry/, root/, trackml/), each named with its origin in SOURCES.md.
DATA_DIR = Path(__file__).resolve().parent / "data"

#: The tiny, fast setting every composed training test starts from (overridable key by key).
TINY = (
    "dataset.batch_size=32",
    "dataset.eval_batch_size=64",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "++callbacks.progress_bar=null",
    "normalization_events=128",
)


def override_key(override: str) -> str:
    """``+a.b=1`` -> ``a.b``; ``~a`` -> ``a``; ``a=1`` -> ``a``."""
    return override.split("=", 1)[0].lstrip("+~")


def compose_train(overrides: Sequence[str] = (), return_hydra_config: bool = True) -> DictConfig:
    """Compose the packaged ``train.yaml`` with ``overrides`` (Hydra's errors propagate)."""
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        return compose(
            config_name="train", return_hydra_config=return_hydra_config, overrides=list(overrides)
        )


def make_cfg(
    tmp_path: Path, data_dir: Path, overrides: Sequence[str] = (), base: Sequence[str] = TINY
) -> DictConfig:
    """Compose the train config with a run directory in tmp_path and a tiny, fast setting.

    ``base`` overrides whose key also appears in ``overrides`` are dropped (``overrides`` win).
    """
    keys = {override_key(o) for o in overrides}
    base = [o for o in base if override_key(o) not in keys]
    cfg = compose_train(
        [f"paths.data_dir={data_dir}", f"paths.log_dir={tmp_path / 'logs'}", *base, *overrides]
    )
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
        cfg.hydra.runtime.output_dir = str(tmp_path / "run")
        cfg.hydra.job.num = 0
    HydraConfig().set_config(cfg)
    return cfg


#: Events in the shared toy WCTE store (``toy_data`` fixture).
N_TOY = 600


@functools.cache
def toy_store_dir(
    root: Path, n_events: int = N_TOY, physics: tuple[tuple[str, Any], ...] = (), seed: int = 0
) -> Path:
    """A toy WCTE store under ``root`` (simulated once per process, whichever module asks first);
    ``physics`` (name, value) pairs override the toy's PhysicsConfig defaults. With the defaults it holds
    the first ``n_events`` of what ``dataset=toy`` simulates, so training on it is not refused as another
    toy (``recoml.data.prepare.check_toy_settings``); other settings need ``dataset.simulate=null``."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from recoml.families.water_cherenkov.to_store import simulate_to_store

    data_dir = Path(root) / f"toy_data_{n_events}"
    det = instantiate(OmegaConf.load(CONF_DIR / "detector" / "wcte.yaml"))
    simulate_to_store(
        det, data_dir / "toy_wcte.h5", n_events=n_events, seed=seed, overwrite=True, physics=dict(physics)
    )
    return data_dir
