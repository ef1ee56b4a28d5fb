"""The contracts between recoml's layers, in code: abstract bases and Protocols for what plugs into the
generic engine (detectors, tasks, simulators, converters) and the types that cross layers (hit batches).

This package imports nothing else of recoml except :mod:`recoml.errors`; everything else may import it.
"""

from recoml.contracts.augmentation import augmentation_of
from recoml.contracts.batch import HitBatch
from recoml.contracts.converter import Converter
from recoml.contracts.detector import Detector
from recoml.contracts.representation import Representation
from recoml.contracts.simulator import Simulator, simulator_of
from recoml.contracts.task import Task

__all__ = [
    "Converter",
    "Detector",
    "HitBatch",
    "Representation",
    "Simulator",
    "Task",
    "augmentation_of",
    "simulator_of",
]
