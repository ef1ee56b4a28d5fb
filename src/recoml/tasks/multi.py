"""Several tasks learned by one network: the output vector is split between the tasks' heads."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, cast

import torch
from torch import nn
from torchmetrics import MetricCollection

from recoml.contracts.batch import HitBatch
from recoml.contracts.task import Task


class MultiTask(Task):
    """Weighted sum of per-event tasks; metrics and predictions are prefixed with each task's name."""

    kind = "multi"

    def __init__(
        self,
        tasks: Mapping[str, Task],
        weights: Mapping[str, float] | None = None,
        name: str = "multi",
        monitor: str = "val/loss",
        monitor_mode: str = "min",
    ) -> None:
        super().__init__(name, "", monitor, monitor_mode)
        if any(t.node_level for t in tasks.values()):
            raise ValueError("task=multi combines per-event tasks only (hit classification is per hit)")
        self.tasks = nn.ModuleDict(dict(tasks))
        self.weights = {k: float((weights or {}).get(k, 1.0)) for k in self.tasks}
        self.sizes = [t.out_dim for t in self.subtasks.values()]
        self.out_dim = sum(self.sizes)

    @property
    def subtasks(self) -> dict[str, Task]:
        """The sub-tasks by name, typed (``self.tasks`` registers them as modules)."""
        return {k: cast(Task, t) for k, t in self.tasks.items()}

    @property
    def target_fields(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(f for t in self.subtasks.values() for f in t.target_fields))

    def prediction_sections(self) -> list[dict[str, Any]]:
        """The sub-tasks' sections, their fields prefixed ``<name>.``."""
        return [t.prediction_section() | {"name": k, "prefix": f"{k}."} for k, t in self.subtasks.items()]

    def split(self, output: torch.Tensor) -> dict[str, torch.Tensor]:
        return dict(zip(self.tasks.keys(), output.split(self.sizes, dim=-1)))

    def adopt_conventions(self, attrs: dict[str, Any]) -> None:
        for task in self.subtasks.values():
            task.adopt_conventions(attrs)

    def fit(self, batches: Iterable[HitBatch]) -> None:
        """Each sub-task passes over ``batches`` once (re-iterable, see ``RecoModule.fit_statistics``)."""
        for task in self.subtasks.values():
            task.fit(batches)

    def loss(self, output: torch.Tensor, batch: HitBatch) -> torch.Tensor:
        parts = self.split(output)
        losses = [self.weights[k] * t.loss(parts[k], batch) for k, t in self.subtasks.items()]
        return sum(losses[1:], losses[0])

    def predict(self, output: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = self.split(output)
        return {f"{k}/{n}": v for k, t in self.subtasks.items() for n, v in t.predict(parts[k]).items()}

    def truth(self, batch: HitBatch) -> dict[str, torch.Tensor]:
        return {f"{k}/{n}": v for k, t in self.subtasks.items() for n, v in t.truth(batch).items()}

    def make_metrics(self) -> nn.ModuleDict:
        """One collection per sub-task; the module flattens them as ``<task>/<metric>``."""
        return nn.ModuleDict({k: t.make_metrics() for k, t in self.subtasks.items()})

    def update_metrics(self, metrics: nn.ModuleDict, output: torch.Tensor, batch: HitBatch) -> None:
        parts = self.split(output)
        for k, t in self.subtasks.items():
            # Each entry is what that sub-task's make_metrics built.
            t.update_metrics(cast(MetricCollection, metrics[k]), parts[k], batch)
