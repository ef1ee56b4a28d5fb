"""The default augmentation: each detector family's own exact symmetries, whatever the detector.

A config cannot name one augmentation class for every family (a cylinder's reflections mean nothing to a
tracker or to strings in the sea), so ``augment=symmetries`` asks the detector: its family declares the
class in :attr:`~recoml.contracts.Detector.augmentation_target`, and a family without one trains on its
batches as they are.
"""

from __future__ import annotations

import logging
from typing import Any

from hydra.utils import get_method
from torch import nn

from recoml.contracts.detector import Detector

log = logging.getLogger(__name__)


def augmentation_of(detector: Detector, **options: Any) -> nn.Module | None:
    """The family's symmetry augmentation for ``detector`` built with ``options`` (e.g. ``p``), or None
    (logged) when the family declares none or the detector has none."""
    target = detector.augmentation_target
    if target is None:
        log.info(
            "detector %s (%s family) declares no symmetries: no augmentation", detector.name, detector.family
        )
        return None
    module = get_method(target)(detector=detector, **options)
    if module is not None and not isinstance(module, nn.Module):
        raise TypeError(f"{target} (augmentation_target of {type(detector).__name__}) built a {type(module)}")
    return module
