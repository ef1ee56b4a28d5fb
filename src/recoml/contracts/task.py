"""A task says what to learn: which stored fields are targets, how many outputs the network needs,
the loss, the output in physical units, and the metrics (one definition shared by every model)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torchmetrics import MetricCollection

from recoml.contracts.batch import HitBatch


class Task(nn.Module):
    """Base class. Subclasses set :attr:`kind` and ``out_dim`` and implement the hooks below.

    Tasks are ``nn.Module``s so that fitted target statistics (e.g. the mean log-energy) are buffers
    saved in the checkpoint with the network. A task also declares what it adds to a predictions file
    (:meth:`prediction_sections`, :attr:`prediction_objects`, :meth:`prediction_hit_fields`,
    :meth:`prediction_chunk`), so prediction has no task-specific branches.
    """

    #: The evaluation kind (the key of the evaluator registry); required on every concrete task class.
    kind: ClassVar[str]
    #: Module whose import registers the evaluator of :attr:`kind` (``recoml.evaluation`` registers the
    #: built-in ones; a family names its own). Stored in the predictions file.
    evaluator: ClassVar[str] = "recoml.evaluation"
    #: True when the network must give one output per hit (hit classification).
    node_level: ClassVar[bool] = False
    #: Object types (besides events) the predictions file holds; None: ``hits`` for node-level tasks.
    prediction_objects: ClassVar[tuple[str, ...] | None] = None
    out_dim: int = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__name__.startswith("_") and not isinstance(getattr(cls, "kind", None), str):
            raise TypeError(f"task class {cls.__qualname__} must set the class attribute `kind`")

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
    def adopt_conventions(self, attrs: dict[str, Any]) -> None:
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

    # -- what the task adds to a predictions file ---------------------------------------------------
    def prediction_section(self) -> dict[str, Any]:
        """Attributes of this task's section in the predictions file (what its evaluator reads)."""
        return {"name": self.name, "kind": self.kind, "evaluator": self.evaluator, "prefix": ""}

    def prediction_sections(self) -> list[dict[str, Any]]:
        """One section per evaluated task (a multi-task returns its sub-tasks')."""
        return [self.prediction_section()]

    def prediction_hit_fields(self, store_fields: Iterable[str]) -> tuple[str, ...]:
        """Extra store hit fields copied into the predictions file. Default: none."""
        return ()

    def prediction_chunk(
        self, prediction: Mapping[str, torch.Tensor], batch: HitBatch
    ) -> dict[str, np.ndarray] | None:
        """Arrays for one batch when the task writes objects of its own (e.g. edges); None: the generic
        per-event (and per-hit) layout."""
        return None

    def check_predictable(self, where: str) -> None:
        """Raise a ConfigError when this task's model is not scored through a predictions file."""

    def make_metrics(self) -> nn.ModuleDict:
        """Metrics of one stage: a ``MetricCollection``, or a ``ModuleDict`` of them (one per sub-task)."""
        raise NotImplementedError

    def update_metrics(self, metrics: MetricCollection, output: torch.Tensor, batch: HitBatch) -> None:
        raise NotImplementedError
