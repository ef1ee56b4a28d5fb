"""What every detector offers the generic engine, whatever its family (water Cherenkov, tracker, ...).

The engine (store, data, models, tasks, training, prediction, evaluation, export) sees detectors only
through this contract, so a new detector family is its own package plus YAML, with no edit elsewhere.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

import numpy as np


class Detector(ABC):
    """A detector: a named set of sensors (PMTs, tracker modules, optical modules, ...).

    Subclasses set :attr:`family` and implement the abstract members. Sensor ``k`` is the one that
    stored hits refer to by index ``k`` (``hit_pmt`` for water Cherenkov).
    """

    #: The detector family's name, e.g. ``"water_cherenkov"`` or ``"tracking"``.
    family: ClassVar[str]
    #: Import path of the family's :class:`~recoml.contracts.Simulator` (a ``_target_``, resolved by
    #: :func:`recoml.contracts.simulator_of`, so the engine never imports a family).
    simulator_target: ClassVar[str]

    name: str
    #: Import path of the family's augmentation by exact detector symmetries (a callable taking ``detector=``
    #: and a probability ``p`` that returns an ``nn.Module``, or None for a detector without any), built by
    #: :func:`recoml.contracts.augmentation_of` for ``augment=symmetries``; ``None``: the family declares
    #: no symmetry, training batches stay as they are.
    augmentation_target: ClassVar[str | None] = None
    #: Import path of the module that draws this family's events (``figures()`` and ``interactive()``,
    #: used by ``recoml display`` and the evaluation report); ``None``: no event display.
    event_display: ClassVar[str | None] = None

    # Read-only for the type checker; at run time a subclass holds them as dataclass fields or properties.
    if TYPE_CHECKING:

        @property
        def n_sensors(self) -> int:
            """How many sensors hits can refer to."""

        @property
        def sensor_positions(self) -> np.ndarray:
            """``(n_sensors, 3)`` float32 positions in the family's length unit (the detector fingerprint
            of :mod:`recoml.data.identity` hashes them)."""

        @property
        def sensor_directions(self) -> np.ndarray:
            """``(n_sensors, 3)`` unit vectors the sensors face (zeros where sensors have no facing
            direction, e.g. tracker modules)."""

    @abstractmethod
    def feature_scales(self) -> dict[str, tuple[float, float]]:
        """``{feature: (mean, std)}`` fixed by the geometry (e.g. x/y/z over the sensor positions);
        the normalizer starts from these and fits the data-dependent features on the training split."""

    def aux_truth(self, truth: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Per-event truth derived with the geometry, added to the predictions file for plots (e.g.
        distance to the wall). ``truth`` holds the generic ``aux_vertex (N, 3)`` and ``aux_direction
        (N, 3)`` when the store has them. Default: nothing."""
        return {}
