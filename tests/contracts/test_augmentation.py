"""``augment=symmetries`` (the default) asks the detector's family for its symmetry augmentation."""

from __future__ import annotations

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
    assert type(augmentation_of(module.detector, p=1.0)) is CylinderAugment
    assert torch.equal(module.augment.permutations, augmentation_of(module.detector).permutations)
