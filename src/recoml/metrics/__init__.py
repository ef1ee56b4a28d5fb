"""Physics metrics with one definition for everyone (torchmetrics, synced across ranks)."""

from recoml.metrics.core import PairAccuracy, QuantileMetric

__all__ = ["PairAccuracy", "QuantileMetric"]
