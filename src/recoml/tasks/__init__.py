"""Tasks (targets, loss, outputs, metrics) and the generic LightningModule that trains any model on them."""

from recoml.tasks.base import Task
from recoml.tasks.classification import ClassificationTask, HitClassificationTask
from recoml.tasks.multi import MultiTask
from recoml.tasks.regression import DirectionTask, EnergyTask, VertexTask
from recoml.tasks.tracking import EdgeClassificationTask, MetricLearningTask, TrackerHitClassificationTask

__all__ = [
    "ClassificationTask",
    "DirectionTask",
    "EdgeClassificationTask",
    "EnergyTask",
    "HitClassificationTask",
    "MetricLearningTask",
    "MultiTask",
    "Task",
    "TrackerHitClassificationTask",
    "VertexTask",
]
