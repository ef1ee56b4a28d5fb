"""Energy, vertex and direction regression.

Targets are standardized with statistics fitted on the training split (kept as buffers in the
checkpoint), so one learning rate suits every detector size; predictions come back in MeV, cm and unit
vectors.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric, MetricCollection

from recoml.contracts.batch import HitBatch
from recoml.contracts.task import Task
from recoml.data.identity import ENERGY_KINDS
from recoml.errors import ConfigError, DataError
from recoml.metrics import QuantileMetric

log = logging.getLogger(__name__)

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

    def target_values(self, batch: HitBatch) -> torch.Tensor:
        """The regressed quantity of each event (the stored target; subclasses convert)."""
        return batch.targets[self.target]

    def fit(self, batches: Iterable[HitBatch]) -> None:
        n, s, s2 = (
            0,
            torch.zeros(self.out_dim, dtype=torch.float64),
            torch.zeros(self.out_dim, dtype=torch.float64),
        )
        for batch in batches:
            x = self.transform(self.target_values(batch)).double().cpu()
            n, s, s2 = n + len(x), s + x.sum(0), s2 + (x * x).sum(0)
        if n:
            mean = s / n
            std = (s2 / n - mean**2).clamp(min=1e-12).sqrt()
            self.mean.copy_(mean.float())
            self.std.copy_(std.float())

    def standardized(self, batch: HitBatch) -> torch.Tensor:
        return (self.transform(self.target_values(batch)) - self.mean) / self.std

    def loss(self, output: torch.Tensor, batch: HitBatch) -> torch.Tensor:
        return self._loss(output.float(), self.standardized(batch))

    def physical(self, output: torch.Tensor) -> torch.Tensor:
        return self.inverse(output.float() * self.std + self.mean)


#: Rest masses (MeV) by recoml label (gamma 0, e 1, mu 2, pi0 3), PDG 2024.
MASS_BY_LABEL = {0: 0.0, 1: 0.51099895, 2: 105.6583755, 3: 134.9768}


def convert_energy(value: torch.Tensor, mass: torch.Tensor, source: str, target: str) -> torch.Tensor:
    """Convert between ``kinetic`` energy, ``total`` energy and ``momentum`` (MeV, MeV/c) of particles of
    rest ``mass`` (MeV): E = T + m, p = sqrt(E^2 - m^2)."""
    if source == target:
        return value
    total = {"kinetic": lambda v: v + mass, "total": lambda v: v, "momentum": lambda v: torch.hypot(v, mass)}
    e = total[source](value)
    if target == "total":
        return e
    if target == "kinetic":
        return e - mass
    return (e * e - mass * mass).clamp(min=0).sqrt()


class EnergyTask(_StandardizedRegression):
    """Energy (MeV) through standardized log(E): the resolution of a Cherenkov detector is relative.

    ``quantity`` is what the network regresses and reports: ``kinetic`` energy, ``total`` energy or
    ``momentum``. The store declares what its ``energies`` hold (attribute ``energy_kind``); where the
    two differ, targets are converted with the rest mass of each event's particle (from ``labels``).
    """

    kind = "energy"

    def prediction_section(self) -> dict[str, Any]:
        """The regressed quantity (kinetic, total energy or momentum) is named in reports."""
        return super().prediction_section() | {"quantity": self.quantity}

    def __init__(
        self,
        name: str = "energy",
        target: str = "energies",
        loss: str = "huber",
        monitor: str = "val/loss",
        monitor_mode: str = "min",
        quantity: str = "kinetic",
    ) -> None:
        super().__init__(name, target, 1, loss, monitor, monitor_mode)
        if quantity not in ENERGY_KINDS:
            raise ConfigError(f"task.quantity must be one of {list(ENERGY_KINDS)}, got '{quantity}'")
        self.quantity = quantity
        self.stored_kind = quantity  # until a store says otherwise (adopt_conventions)

    @property
    def target_fields(self) -> tuple[str, ...]:
        return (self.target,) if self.stored_kind == self.quantity else (self.target, "labels")

    def adopt_conventions(self, attrs: dict[str, Any]) -> None:
        kind = attrs.get("energy_kind")
        if kind is None:
            log.info("the store does not declare its energy_kind; taking its energies as %s", self.quantity)
            kind = self.quantity
        if kind not in ENERGY_KINDS:
            raise DataError(f"store attribute energy_kind={kind!r} is not one of {list(ENERGY_KINDS)}")
        if kind != self.quantity:
            log.info(
                "regressing %s from stored %s energies (converted with each particle's mass)",
                self.quantity,
                kind,
            )
        self.stored_kind = kind

    def target_values(self, batch: HitBatch) -> torch.Tensor:
        value = batch.targets[self.target].reshape(-1).float()
        if self.stored_kind == self.quantity:
            return value
        labels = batch.targets["labels"].reshape(-1).long()
        table = torch.full((int(max(MASS_BY_LABEL)) + 2,), float("nan"), device=value.device)
        for label, label_mass in MASS_BY_LABEL.items():
            table[label] = label_mass
        mass = table[labels.clamp(-1, len(table) - 2)]
        if torch.isnan(mass).any():
            bad = sorted(set(labels[torch.isnan(mass)].tolist()))
            raise DataError(
                f"converting {self.stored_kind} energies to {self.quantity} needs each particle's mass; "
                f"labels {bad} have none (known: {MASS_BY_LABEL})"
            )
        return convert_energy(value, mass, self.stored_kind, self.quantity)

    def transform(self, target: torch.Tensor) -> torch.Tensor:
        return target.reshape(len(target), 1).float().clamp(min=1e-3).log()

    def inverse(self, value: torch.Tensor) -> torch.Tensor:
        return value.exp()

    def predict(self, output: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"energy": self.physical(output).flatten()}

    def truth(self, batch: HitBatch) -> dict[str, torch.Tensor]:
        return {"energy": self.target_values(batch).reshape(-1).float()}

    def make_metrics(self) -> MetricCollection:
        return MetricCollection(
            {"resolution": QuantileMetric(0.68), "bias": MeanMetric(), "abs_error": MeanMetric()}
        )

    def update_metrics(self, metrics: MetricCollection, output: torch.Tensor, batch: HitBatch) -> None:
        true = self.target_values(batch).reshape(-1).float()
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
