"""``augment=symmetries`` (the default) asks the detector's family for its symmetry augmentation."""

from __future__ import annotations

import logging

import torch
from hydra.utils import instantiate
from omegaconf import open_dict

from recoml.contracts import augmentation_of
from recoml.families.water_cherenkov.augment import CylinderAugment
from recoml.tasks.module import RecoModule
from recoml.utils.config import config_dict
from tests.helpers import DATA_DIR, compose_train, make_cfg


def _augment(overrides: list[str]):
    cfg = compose_train(overrides, return_hydra_config=False)
    return instantiate(cfg.augment)(detector=instantiate(cfg.detector))


def test_default_is_the_families_symmetries():
    cfg = compose_train([], return_hydra_config=False)
    assert cfg.augment._target_ == "recoml.contracts.augmentation_of"
    wcte = _augment([])
    assert isinstance(wcte, CylinderAugment) and wcte.p == 0.5
    # WCTE's mPMT tank: reflections and the top-bottom flip are exact symmetries (test_augment.py)
    assert wcte.reflect_x and wcte.flip_y
    assert isinstance(_augment(["detector=hk", "augment.p=0.25"]), CylinderAugment)
    assert _augment(["detector=hk", "augment.p=0.25"]).p == 0.25


def test_families_without_symmetries_train_on_batches_as_they_are():
    assert _augment(["detector=toy_tracker"]) is None
    detx = sorted((DATA_DIR / "km3net").glob("*.detx*"))[0]
    assert _augment(["detector=km3net", f"detector.path={detx}"]) is None


def test_the_module_builds_it_and_an_empty_augment_builds_none(tmp_path, toy_data):
    cfg = make_cfg(tmp_path, toy_data)
    module = RecoModule(config_dict(cfg))
    assert isinstance(module.augment, CylinderAugment)
    with open_dict(cfg):
        cfg.augment = {}
    assert RecoModule(config_dict(cfg)).augment is None
    # the built augmentation is the family's own class with the config's options
    built = augmentation_of(module.detector, p=1.0)
    assert isinstance(built, CylinderAugment) and built.p == 1.0
    assert torch.equal(module.augment.permutations, built.permutations)


def test_a_tank_without_exact_symmetries_gets_none_and_no_warning(caplog):
    """The real 2010 Super-K geometry of tests/data/root (irregular PMT placement) has no exact symmetry
    among reflect_x, flip_y and quarter turns: nothing was asked for by name, so no warning either."""
    raw = DATA_DIR / "root" / "wcsim_raw_2010.root"
    caplog.set_level(logging.INFO, logger="recoml.families.water_cherenkov.augment")
    assert _augment(["detector=from_file", f"detector.path={raw}"]) is None
    assert "no exact reflection or rotation symmetry" in caplog.text
    assert not [r for r in caplog.records if r.name.endswith("augment") and r.levelno >= logging.WARNING]
    # asked for by name (augment=cylinder), the missing transforms are warned about
    caplog.clear()
    explicit = _augment(["detector=from_file", f"detector.path={raw}", "augment=cylinder"])
    assert isinstance(explicit, CylinderAugment) and "reflect_x is not an exact symmetry" in caplog.text
