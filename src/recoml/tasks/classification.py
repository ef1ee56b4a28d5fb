"""Particle identification and per-hit classification."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import (
    BinaryAccuracy,
    BinaryAUROC,
    BinaryPrecision,
    BinaryRecall,
    MulticlassAccuracy,
    MulticlassAUROC,
)

from recoml.contracts.batch import HitBatch
from recoml.contracts.task import Task
from recoml.errors import DataError
from recoml.metrics import PairAccuracy


class ClassificationTask(Task):
    """Event classification (e.g. gamma/e/mu) with cross-entropy; outputs are class probabilities.

    ``label_values[i]`` is the stored label of class ``i`` (the store uses gamma 0, e 1, mu 2, pi0 3), so
    any subset of particles maps onto contiguous class indices.
    """

    kind = "classification"
    #: Buffers (registered in __init__).
    lookup: torch.Tensor

    def __init__(
        self,
        name: str = "pid",
        target: str = "labels",
        label_values: Sequence[int] = (0, 1, 2),
        class_names: Sequence[str] = ("gamma", "e", "mu"),
        pairs: Sequence[Sequence[str]] = (),
        label_smoothing: float = 0.0,
        monitor: str = "val/loss",
        monitor_mode: str = "min",
    ) -> None:
        super().__init__(name, target, monitor, monitor_mode)
        if len(label_values) != len(class_names):
            raise ValueError("task: label_values and class_names must have the same length")
        self.class_names = list(class_names)
        self.label_values = [int(v) for v in label_values]
        self.out_dim = len(class_names)
        self.label_smoothing = label_smoothing
        lookup = torch.full((max(self.label_values) + 2,), -1, dtype=torch.long)
        for i, v in enumerate(self.label_values):
            lookup[v] = i
        self.register_buffer("lookup", lookup, persistent=False)
        unknown = [p for pair in pairs for p in pair if p not in self.class_names]
        if unknown:
            raise ValueError(f"task.pairs names unknown classes {unknown}; classes are {self.class_names}")
        self.pairs = [(self.class_names.index(a), self.class_names.index(b)) for a, b in pairs]

    def prediction_section(self) -> dict[str, Any]:
        names = self.class_names
        return super().prediction_section() | {
            "class_names": list(names),
            "label_values": list(self.label_values),
            "pairs": [[names[a], names[b]] for a, b in self.pairs],
        }

    def classes_of(self, labels: torch.Tensor) -> torch.Tensor:
        """Stored labels -> class indices; refuses labels that are not a class of this task, and float or
        bool labels (never cast: 1.7 would silently become class 1)."""
        if labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise DataError(
                f"task {self.name}: field '{self.target}' holds {str(labels.dtype).removeprefix('torch.')} "
                f"values; expected integer labels among the task's label_values {self.label_values}"
            )
        labels = labels.long().flatten()
        inside = (labels >= 0) & (labels < len(self.lookup))
        classes = torch.full_like(labels, -1)
        classes[inside] = self.lookup[labels[inside]]
        if (classes < 0).any():
            bad = sorted(set(labels[classes < 0].tolist()))
            raise DataError(
                f"task {self.name}: field '{self.target}' holds label values {bad} that are not among the "
                f"task's label_values {self.label_values} (classes {self.class_names})"
            )
        return classes

    def fit(self, batches: Iterable[HitBatch]) -> None:
        for batch in batches:  # one pass only to check every training label is a known class
            self.classes_of(batch.targets[self.target])

    def loss(self, output: torch.Tensor, batch: HitBatch) -> torch.Tensor:
        target = self.classes_of(batch.targets[self.target])
        return F.cross_entropy(output.float(), target, label_smoothing=self.label_smoothing)

    def predict(self, output: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"probabilities": output.float().softmax(-1)}

    def truth(self, batch: HitBatch) -> dict[str, torch.Tensor]:
        return {"labels": self.classes_of(batch.targets[self.target])}

    def make_metrics(self) -> MetricCollection:
        n = self.out_dim
        metrics: dict[str, Metric | MetricCollection] = {
            "acc": MulticlassAccuracy(num_classes=n, average="micro")
        }
        if n > 2:
            metrics["auroc"] = MulticlassAUROC(num_classes=n, thresholds=200)
        for a, b in self.pairs:
            metrics[f"acc_{self.class_names[a]}_{self.class_names[b]}"] = PairAccuracy(a, b)
        return MetricCollection(metrics)

    def update_metrics(self, metrics: MetricCollection, output: torch.Tensor, batch: HitBatch) -> None:
        metrics.update(output.float().softmax(-1), self.classes_of(batch.targets[self.target]))


class HitClassificationTask(Task):
    """Per-hit signal vs background (dark noise in water Cherenkov, low-pT hits in trackers).

    A hit is signal when its ``hit_<target>`` field is >= 0 (``hit_parent`` is -1 for dark noise);
    ``threshold`` is the working point for accuracy, efficiency and purity.
    """

    kind = "hit_classification"
    node_level = True
    out_dim = 1

    def __init__(
        self,
        name: str = "hit_classification",
        target: str = "parent",
        threshold: float = 0.5,
        monitor: str = "val/auroc",
        monitor_mode: str = "max",
    ) -> None:
        super().__init__(name, target, monitor, monitor_mode)
        self.threshold = threshold

    def prediction_section(self) -> dict[str, Any]:
        return super().prediction_section() | {"threshold": float(self.threshold)}

    @property
    def target_fields(self) -> tuple[str, ...]:
        return ()

    @property
    def hit_fields(self) -> tuple[str, ...]:
        return (f"hit_{self.target}",)

    def hit_truth(self, batch: HitBatch) -> torch.Tensor:
        return (batch.hits[self.target] >= 0).float()

    def loss(self, output: torch.Tensor, batch: HitBatch) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(output.float().flatten(), self.hit_truth(batch))

    def predict(self, output: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"hit_probability": output.float().flatten().sigmoid()}

    def truth(self, batch: HitBatch) -> dict[str, torch.Tensor]:
        return {"hit_signal": self.hit_truth(batch)}

    def make_metrics(self) -> MetricCollection:
        t = self.threshold
        return MetricCollection(
            {
                "auroc": BinaryAUROC(thresholds=200),
                "acc": BinaryAccuracy(threshold=t),
                "efficiency": BinaryRecall(threshold=t),
                "purity": BinaryPrecision(threshold=t),
            }
        )

    def update_metrics(self, metrics: MetricCollection, output: torch.Tensor, batch: HitBatch) -> None:
        metrics.update(output.float().flatten().sigmoid(), self.hit_truth(batch).long())
