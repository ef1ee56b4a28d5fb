"""Edge-level metrics of graph construction and edge classification, as torchmetrics (summed across ranks).

All are ratios of counts, 0 when the denominator is 0 (an empty graph reports zeros, never NaN):

* ``graph_efficiency`` = true target edges in the graph / target edges of the truth graph;
* ``graph_purity`` = true edges in the graph / edges in the graph; ``edges_per_event``;
* ``efficiency`` = target edges scored above the cut / target edges in the graph;
* ``purity`` = true edges (any particle) above the cut / edges above the cut;
* ``target_purity`` (acorn's masked purity) = target edges above the cut / (edges above the cut that are
  not true edges of non-target particles);
* ``auroc``: true edges (of any particle) against false edges, every edge counted (acorn's edge AUC);
* ``auroc_target``: target edges against false edges (true edges of non-target particles left out).

The keyword names of ``update`` are shared so a ``MetricCollection`` routes each one what it needs.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import BinaryAUROC

__all__ = [
    "EdgeEfficiency",
    "EdgePurity",
    "EdgesPerEvent",
    "GraphEfficiency",
    "GraphPurity",
    "EdgeAUROC",
    "TargetPurity",
    "edge_classification_metrics",
    "graph_metrics",
]


class _Ratio(Metric):
    """``num / den`` summed over updates (0 when ``den`` is 0)."""

    #: Metric states (added in __init__).
    num: torch.Tensor
    den: torch.Tensor

    full_state_update = False
    higher_is_better = True

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("num", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("den", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def _add(self, num: torch.Tensor | int | float, den: torch.Tensor | int | float) -> None:
        self.num += torch.as_tensor(num, dtype=torch.float64, device=self.num.device)
        self.den += torch.as_tensor(den, dtype=torch.float64, device=self.den.device)

    def compute(self) -> torch.Tensor:
        return torch.where(self.den > 0, self.num / self.den.clamp_min(1), torch.zeros_like(self.num)).float()


class GraphEfficiency(_Ratio):
    def update(self, edge_target: torch.Tensor, truth_target: torch.Tensor) -> None:
        self._add(edge_target.sum(), truth_target.sum())


class GraphPurity(_Ratio):
    def update(self, edge_y: torch.Tensor) -> None:
        self._add(edge_y.sum(), edge_y.numel())


class EdgesPerEvent(_Ratio):
    higher_is_better = False

    def update(self, edge_y: torch.Tensor, n_events: int) -> None:
        self._add(edge_y.numel(), n_events)


class _Thresholded(_Ratio):
    """A ratio over the edges scored above ``threshold``."""

    def __init__(self, threshold: float = 0.5, **kwargs) -> None:
        super().__init__(**kwargs)
        self.threshold = threshold


class EdgeEfficiency(_Thresholded):
    def update(self, scores: torch.Tensor, edge_target: torch.Tensor) -> None:
        self._add((edge_target & (scores > self.threshold)).sum(), edge_target.sum())


class EdgePurity(_Thresholded):
    def update(self, scores: torch.Tensor, edge_y: torch.Tensor) -> None:
        positive = scores > self.threshold
        self._add((edge_y & positive).sum(), positive.sum())


class TargetPurity(_Thresholded):
    def update(self, scores: torch.Tensor, edge_y: torch.Tensor, edge_target: torch.Tensor) -> None:
        positive = scores > self.threshold
        masked = positive & edge_y & ~edge_target
        self._add((edge_target & positive).sum(), positive.sum() - masked.sum())


class EdgeAUROC(BinaryAUROC):
    """AUROC of true edges against false edges (binned, so memory stays bounded); ``target_only`` scores
    target edges against false edges and leaves true edges of non-target particles out."""

    #: Metric states (added in __init__).
    n_pos: torch.Tensor
    n_neg: torch.Tensor

    def __init__(self, thresholds: int = 200, target_only: bool = False, **kwargs) -> None:
        super().__init__(thresholds=thresholds, **kwargs)
        self.target_only = target_only
        self.add_state("n_pos", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("n_neg", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, scores: torch.Tensor, edge_y: torch.Tensor, edge_target: torch.Tensor) -> None:  # type: ignore[override]
        keep = (edge_target | ~edge_y) if self.target_only else torch.ones_like(edge_y)
        positive = (edge_target if self.target_only else edge_y)[keep]
        self.n_pos += positive.sum()
        self.n_neg += (~positive).sum()
        super().update(scores[keep].float(), positive.long())

    # torchmetrics' BinaryAUROC narrows its base's compute (a tuple) to a Tensor under its own ignore.
    def compute(self) -> torch.Tensor:  # type: ignore[override]
        """0 until both positive and false edges were seen (an empty graph reports 0, not NaN)."""
        if not (self.n_pos > 0 and self.n_neg > 0):
            return torch.tensor(0.0)
        return super().compute()


def graph_metrics() -> dict[str, Metric]:
    return {
        "graph_efficiency": GraphEfficiency(),
        "graph_purity": GraphPurity(),
        "edges_per_event": EdgesPerEvent(),
    }


def edge_classification_metrics(threshold: float = 0.5) -> MetricCollection:
    return MetricCollection(
        {
            "efficiency": EdgeEfficiency(threshold),
            "purity": EdgePurity(threshold),
            "target_purity": TargetPurity(threshold),
            "auroc": EdgeAUROC(),
            "auroc_target": EdgeAUROC(target_only=True),
            **graph_metrics(),
        },
        compute_groups=False,
    )
