"""Tasks (targets, loss, outputs, metrics) and the generic LightningModule that trains any model on them."""

from recoml.contracts.task import Task
from recoml.tasks.classification import ClassificationTask, HitClassificationTask
from recoml.tasks.multi import MultiTask
from recoml.tasks.regression import DirectionTask, EnergyTask, VertexTask

__all__ = [
    "ClassificationTask",
    "DirectionTask",
    "EnergyTask",
    "HitClassificationTask",
    "MultiTask",
    "Task",
    "VertexTask",
]
