"""A task says what to learn: which stored fields are targets, how many outputs the network needs,
the loss, the output in physical units, and the metrics (one definition shared by every model)."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torchmetrics import MetricCollection

from recoml.data.batch import HitBatch


class Task(nn.Module):
    """Base class. Subclasses set ``out_dim`` and implement the four hooks below.

    Tasks are ``nn.Module``s so that fitted target statistics (e.g. the mean log-energy) are buffers
    saved in the checkpoint with the network.
    """

    #: True when the network must give one output per hit (hit classification).
    node_level: bool = False
    out_dim: int = 1

    def __init__(self, name: str, target: str, monitor: str = "val/loss", monitor_mode: str = "min") -> None:
        super().__init__()
        self.name = name
        self.target = target
        self.monitor = monitor
        self.monitor_mode = monitor_mode

    # -- what the data must provide -------------------------------------------------------------
    @property
    def target_fields(self) -> tuple[str, ...]:
        """Per-event store fields this task reads."""
        return (self.target,)

    @property
    def hit_fields(self) -> tuple[str, ...]:
        """Extra per-hit store fields this task reads (beyond the representation's)."""
        return ()

    # -- hooks ----------------------------------------------------------------------------------
    def adopt_conventions(self, attrs: dict) -> None:
        """Called with a store's attributes before its events are read (e.g. its ``energy_kind``, so
        the energy task can convert to the quantity it regresses). Default: nothing to adopt."""

    def fit(self, batches: Iterable[HitBatch]) -> None:
        """Fit target statistics on the training split (one pass). Default: nothing to fit."""

    def loss(self, output: torch.Tensor, batch: HitBatch) -> torch.Tensor:
        raise NotImplementedError

    def predict(self, output: torch.Tensor) -> dict[str, torch.Tensor]:
        """Network output -> named predictions in physical units."""
        raise NotImplementedError

    def truth(self, batch: HitBatch) -> dict[str, torch.Tensor]:
        """Named true values in the same units as :meth:`predict` (for prediction stores)."""
        return {self.target: batch.targets[self.target]}

    def make_metrics(self) -> nn.ModuleDict:
        """Metrics of one stage: a ``MetricCollection``, or a ``ModuleDict`` of them (one per sub-task)."""
        raise NotImplementedError

    def update_metrics(self, metrics: MetricCollection, output: torch.Tensor, batch: HitBatch) -> None:
        raise NotImplementedError
