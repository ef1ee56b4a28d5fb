"""Energy, vertex and direction regression.

Targets are standardized with statistics fitted on the training split (kept as buffers in the
checkpoint), so one learning rate suits every detector size; predictions come back in MeV, cm and unit
vectors.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric, MetricCollection

from recoml.contracts.batch import HitBatch
from recoml.contracts.task import Task
from recoml.metrics import QuantileMetric

_LOSSES = {"mse": F.mse_loss, "huber": F.smooth_l1_loss, "l1": F.l1_loss}


def _loss_fn(name: str):
    try:
        return _LOSSES[name]
    except KeyError:
        raise ValueError(f"task.loss must be one of {sorted(_LOSSES)}, got '{name}'") from None


class _StandardizedRegression(Task):
    """Regress ``transform(target)`` standardized by its training mean and standard deviation."""

    #: Buffers (registered in __init__).
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, name: str, target: str, dim: int, loss: str, monitor: str, monitor_mode: str) -> None:
        super().__init__(name, target, monitor, monitor_mode)
        self.out_dim = dim
        self.loss_name = loss
        self._loss = _loss_fn(loss)
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def transform(self, target: torch.Tensor) -> torch.Tensor:
        return target.reshape(len(target), -1).float()

    def inverse(self, value: torch.Tensor) -> torch.Tensor:
        return value

    def fit(self, batches: Iterable[HitBatch]) -> None:
        n, s, s2 = (
            0,
            torch.zeros(self.out_dim, dtype=torch.float64),
            torch.zeros(self.out_dim, dtype=torch.float64),
        )
        for batch in batches:
            x = self.transform(batch.targets[self.target]).double().cpu()
            n, s, s2 = n + len(x), s + x.sum(0), s2 + (x * x).sum(0)
        if n:
            mean = s / n
            std = (s2 / n - mean**2).clamp(min=1e-12).sqrt()
            self.mean.copy_(mean.float())
            self.std.copy_(std.float())

    def standardized(self, batch: HitBatch) -> torch.Tensor:
        return (self.transform(batch.targets[self.target]) - self.mean) / self.std

    def loss(self, output: torch.Tensor, batch: HitBatch) -> torch.Tensor:
        return self._loss(output.float(), self.standardized(batch))

    def physical(self, output: torch.Tensor) -> torch.Tensor:
        return self.inverse(output.float() * self.std + self.mean)


class EnergyTask(_StandardizedRegression):
    """Energy (MeV) through standardized log(E): the resolution of a Cherenkov detector is relative."""

    kind = "energy"

    def __init__(
        self,
        name: str = "energy",
        target: str = "energies",
        loss: str = "huber",
        monitor: str = "val/loss",
        monitor_mode: str = "min",
    ) -> None:
        super().__init__(name, target, 1, loss, monitor, monitor_mode)

    def transform(self, target: torch.Tensor) -> torch.Tensor:
        return target.reshape(len(target), 1).float().clamp(min=1e-3).log()

    def inverse(self, value: torch.Tensor) -> torch.Tensor:
        return value.exp()

    def predict(self, output: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"energy": self.physical(output).flatten()}

    def truth(self, batch: HitBatch) -> dict[str, torch.Tensor]:
        return {"energy": batch.targets[self.target].reshape(-1).float()}

    def make_metrics(self) -> MetricCollection:
        return MetricCollection(
            {"resolution": QuantileMetric(0.68), "bias": MeanMetric(), "abs_error": MeanMetric()}
        )

    def update_metrics(self, metrics: MetricCollection, output: torch.Tensor, batch: HitBatch) -> None:
        true = batch.targets[self.target].reshape(-1).float()
        frac = (self.physical(output).flatten() - true) / true
        metrics["resolution"].update(frac)
        metrics["bias"].update(frac)
        metrics["abs_error"].update(frac.abs())


class VertexTask(_StandardizedRegression):
    """Interaction vertex (cm), ``positions`` stored as ``(N, 1, 3)``."""

    kind = "vertex"

    def __init__(
        self,
        name: str = "vertex",
        target: str = "positions",
        loss: str = "huber",
        monitor: str = "val/loss",
        monitor_mode: str = "min",
    ) -> None:
        super().__init__(name, target, 3, loss, monitor, monitor_mode)

    def predict(self, output: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"position": self.physical(output)}

    def truth(self, batch: HitBatch) -> dict[str, torch.Tensor]:
        return {"position": self.transform(batch.targets[self.target])}

    def make_metrics(self) -> MetricCollection:
        return MetricCollection({"resolution_cm": QuantileMetric(0.68), "mean_distance_cm": MeanMetric()})

    def update_metrics(self, metrics: MetricCollection, output: torch.Tensor, batch: HitBatch) -> None:
        dist = (self.physical(output) - self.transform(batch.targets[self.target])).norm(dim=-1)
        metrics["resolution_cm"].update(dist)
        metrics["mean_distance_cm"].update(dist)


class DirectionTask(Task):
    """Direction as a unit 3-vector; loss ``1 - cos`` of the angle to the truth.

    Reads ``directions (N, 1, 3)``; with ``target: angles`` it rebuilds the vector from the stored polar
    (from the y axis) and azimuth (atan2(z, x)) angles.
    """

    out_dim = 3

    kind = "direction"

    def __init__(
        self,
        name: str = "direction",
        target: str = "directions",
        monitor: str = "val/loss",
        monitor_mode: str = "min",
    ) -> None:
        super().__init__(name, target, monitor, monitor_mode)

    def true_vector(self, batch: HitBatch) -> torch.Tensor:
        value = batch.targets[self.target].float()
        if self.target == "angles":
            return angles_to_direction(value)
        return value.reshape(len(value), 3)

    def loss(self, output: torch.Tensor, batch: HitBatch) -> torch.Tensor:
        return (1 - F.cosine_similarity(output.float(), self.true_vector(batch), dim=-1)).mean()

    def predict(self, output: torch.Tensor) -> dict[str, torch.Tensor]:
        d = F.normalize(output.float(), dim=-1)
        return {"direction": d, "angles": direction_to_angles(d)}

    def truth(self, batch: HitBatch) -> dict[str, torch.Tensor]:
        d = self.true_vector(batch)
        return {"direction": d, "angles": direction_to_angles(d)}

    def make_metrics(self) -> MetricCollection:
        return MetricCollection({"resolution_deg": QuantileMetric(0.68), "mean_angle_deg": MeanMetric()})

    def update_metrics(self, metrics: MetricCollection, output: torch.Tensor, batch: HitBatch) -> None:
        cos = F.cosine_similarity(output.float(), self.true_vector(batch), dim=-1).clamp(-1, 1)
        angle = torch.rad2deg(torch.acos(cos))
        metrics["resolution_deg"].update(angle)
        metrics["mean_angle_deg"].update(angle)


def direction_to_angles(d: torch.Tensor) -> torch.Tensor:
    """Unit vectors ``(B, 3)`` -> ``(B, 2)``: polar = arccos(d_y), azimuth = atan2(d_z, d_x)."""
    return torch.stack([torch.acos(d[:, 1].clamp(-1, 1)), torch.atan2(d[:, 2], d[:, 0])], dim=-1)


def angles_to_direction(angles: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`direction_to_angles`."""
    polar, azimuth = angles[:, 0], angles[:, 1]
    s = torch.sin(polar)
    return torch.stack([s * torch.cos(azimuth), torch.cos(polar), s * torch.sin(azimuth)], dim=-1)
