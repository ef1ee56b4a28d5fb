"""Metrics that torchmetrics lacks, written as torchmetrics so they sync across DDP ranks."""

from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


class PairAccuracy(Metric):
    """Accuracy of separating class ``a`` from class ``b`` on events whose truth is ``a`` or ``b``.

    The decision is ``p_a > p_b``: the other classes' probabilities do not enter. This is the e/mu (or
    e/gamma) accuracy quoted by water-Cherenkov PID studies.
    """

    #: Metric states (added in __init__).
    correct: torch.Tensor
    total: torch.Tensor

    full_state_update = False
    higher_is_better = True

    def __init__(self, class_a: int, class_b: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.class_a, self.class_b = class_a, class_b
        self.add_state("correct", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, probs: torch.Tensor, target: torch.Tensor) -> None:
        keep = (target == self.class_a) | (target == self.class_b)
        says_a = probs[keep, self.class_a] > probs[keep, self.class_b]
        self.correct += (says_a == (target[keep] == self.class_a)).sum()
        self.total += keep.sum()

    def compute(self) -> torch.Tensor:
        return self.correct.float() / self.total.clamp(min=1)


class QuantileMetric(Metric):
    """A quantile of a per-event quantity over all events seen (e.g. the 68% resolution).

    Keeps every value (events are few compared to memory) so the quantile is exact across ranks.
    """

    #: Metric states (added in __init__).
    values: list[torch.Tensor]

    full_state_update = False
    higher_is_better = False

    def __init__(self, q: float = 0.68, absolute: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        self.q, self.absolute = q, absolute
        self.add_state("values", default=[], dist_reduce_fx="cat")

    def update(self, values: torch.Tensor) -> None:
        values = values.detach().float().flatten()
        self.values.append(values.abs() if self.absolute else values)

    def compute(self) -> torch.Tensor:
        values = dim_zero_cat(self.values)
        if values.numel() == 0:
            return torch.tensor(float("nan"), device=self.device)
        return torch.quantile(values, self.q)
