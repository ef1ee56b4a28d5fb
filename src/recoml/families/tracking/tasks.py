"""Tracking tasks: edge classification, metric learning, and hit classification on tracker events.

The edge and embedding tasks read their truth from the graph the model output carries
(:class:`~recoml.families.tracking.graph.EdgeOutput` /
:class:`~recoml.families.tracking.graph.EmbeddingOutput`), built on the device by
:class:`~recoml.families.tracking.graph.TrackGraphBuilder` from the batch's hit truth. Metric definitions
live in :mod:`recoml.families.tracking.metrics`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics import MetricCollection

from recoml.contracts.batch import HitBatch
from recoml.contracts.task import Task
from recoml.errors import ConfigError, DataError
from recoml.families.tracking.graph import EdgeOutput, EmbeddingOutput, TrackGraph
from recoml.families.tracking.hits import TRUTH_FIELDS
from recoml.families.tracking.metric_learning import embedding_graph, hinge_loss, training_pairs
from recoml.families.tracking.metrics import edge_classification_metrics, graph_metrics
from recoml.families.tracking.predictions import EDGE_HIT_FIELDS, edge_chunk
from recoml.families.tracking.truth import EdgeWeighting, edge_truth
from recoml.tasks.classification import HitClassificationTask

__all__ = ["EdgeClassificationTask", "MetricLearningTask", "TrackerHitClassificationTask"]

_TRUTH_STORE_FIELDS = tuple(f"hit_{n}" for n in TRUTH_FIELDS)


def _graph_with_truth(output: object, task: str, kind: type) -> TrackGraph:
    """The graph of a model output, checked to be the right kind and to carry truth."""
    if not isinstance(output, kind):
        raise ConfigError(
            f"task={task} needs a model returning {kind.__name__} (model=interaction_network for edges, "
            f"model=metric_learning for embeddings); got {type(output).__name__}"
        )
    graph = output.graph  # type: ignore[attr-defined]
    if graph.truth is None:
        raise DataError(
            f"task={task} needs hit truth ({list(_TRUTH_STORE_FIELDS)}) to compute its loss and metrics; "
            "the batch has none"
        )
    return graph


class _GraphTruthTask(Task):
    """Tracking tasks learn from the hits' particle truth (edges are built on the device), not from
    per-event target fields."""

    @property
    def target_fields(self) -> tuple[str, ...]:
        return ()

    @property
    def hit_fields(self) -> tuple[str, ...]:
        return _TRUTH_STORE_FIELDS


class EdgeClassificationTask(_GraphTruthTask):
    """Binary classification of candidate edges with acorn's weighted BCE.

    Loss: ``(sum_w BCE(positives) + sum_w BCE(negatives)) / (n_positives + n_negatives)`` over edges with
    non-zero weight (weights from the graph builder's truth weighting), the positive part scaled by
    ``pos_weight``. ``threshold`` is the score cut of the efficiency/purity metrics.
    """

    kind = "edge_classification"
    evaluator = "recoml.families.tracking.evaluation"
    prediction_objects = ("hits", "edges")

    def __init__(
        self,
        name: str = "edge_classification",
        target: str = "edge_y",
        threshold: float = 0.5,
        pos_weight: float = 1.0,
        monitor: str = "val/auroc",
        monitor_mode: str = "max",
        pt_min: float = 1.0,
        min_hits: int = 3,
        bfield: float = 2.0,
    ) -> None:
        super().__init__(name, target, monitor, monitor_mode)
        if not 0 < threshold < 1:
            raise ConfigError(f"task.threshold must be in (0, 1), got {threshold}")
        self.threshold = float(threshold)
        self.pos_weight = float(pos_weight)
        # What track building and matching downstream need: the target-particle definition of the graph
        # builder and the field (config interpolations of model.representation and detector).
        self.pt_min, self.min_hits, self.bfield = float(pt_min), int(min_hits), float(bfield)

    def prediction_section(self) -> dict[str, Any]:
        return super().prediction_section() | {
            "threshold": self.threshold,
            "pt_min": self.pt_min,
            "min_hits": self.min_hits,
            "bfield": self.bfield,
        }

    def prediction_hit_fields(self, store_fields: Iterable[str]) -> tuple[str, ...]:
        """The hits track building and matching read (those the store has)."""
        present = set(store_fields)
        return tuple(f for f in EDGE_HIT_FIELDS if f in present)

    def prediction_chunk(
        self, prediction: Mapping[str, torch.Tensor], batch: HitBatch
    ) -> dict[str, np.ndarray] | None:
        return edge_chunk(prediction, batch)

    def loss(self, output: EdgeOutput, batch: HitBatch) -> torch.Tensor:  # type: ignore[override]
        graph = _graph_with_truth(output, self.name, EdgeOutput)
        logits = output.logits.float()
        y, w = graph.edge_y, graph.edge_weight
        assert y is not None and w is not None
        pos = y & (w > 0)
        neg = ~y & (w > 0)
        n = pos.sum() + neg.sum()
        if int(n) == 0:
            return logits.sum() * 0.0
        loss_pos = F.binary_cross_entropy_with_logits(
            logits[pos], torch.ones_like(logits[pos]), w[pos], reduction="sum"
        )
        loss_neg = F.binary_cross_entropy_with_logits(
            logits[neg], torch.zeros_like(logits[neg]), w[neg], reduction="sum"
        )
        return (self.pos_weight * loss_pos + loss_neg) / n

    def predict(self, output: EdgeOutput) -> dict[str, torch.Tensor]:  # type: ignore[override]
        """Edge scores with the edges they belong to (``edge_index`` in batch hit indices) and their truth."""
        graph = output.graph
        out = {"edge_score": output.logits.float().sigmoid(), "edge_index": graph.edge_index}
        if graph.edge_y is not None and graph.truth is not None:
            out["edge_y"] = graph.edge_y
            out["edge_target"] = graph.edge_target  # type: ignore[assignment]
            out["edge_weight"] = graph.edge_weight  # type: ignore[assignment]
            # Target edges of the truth graph per event: the graph-efficiency denominator downstream.
            truth = graph.truth
            event = graph.hits.batch[truth.truth_index[0]]
            out["event_truth_target_edges"] = torch.bincount(
                event[truth.truth_target], minlength=graph.num_graphs
            )
        return out

    def truth(self, batch: HitBatch) -> dict[str, torch.Tensor]:
        """Edge truth depends on the graph, so it travels with :meth:`predict`; nothing per event."""
        return {}

    def make_metrics(self) -> MetricCollection:
        return edge_classification_metrics(self.threshold)

    def update_metrics(self, metrics: MetricCollection, output: EdgeOutput, batch: HitBatch) -> None:  # type: ignore[override]
        graph = _graph_with_truth(output, self.name, EdgeOutput)
        assert graph.truth is not None
        metrics.update(
            scores=output.logits.detach().float().sigmoid(),
            edge_y=graph.edge_y,
            edge_target=graph.edge_target,
            truth_target=graph.truth.truth_target,
            n_events=graph.num_graphs,
        )


class MetricLearningTask(_GraphTruthTask):
    """Hinge-loss embedding of hits (see :mod:`recoml.families.tracking.metric_learning`).

    ``out_dim`` is the embedding dimension. Training pairs: truth edges, hard negatives within ``r_train``
    (at most ``knn_train`` per hit), ``randomisation`` x hits random pairs. Validation builds the graph the
    next stage would get (radius ``r_infer``, at most ``knn_infer`` neighbours) and reports its efficiency,
    purity and size. ``weighting``: :class:`~recoml.families.tracking.truth.EdgeWeighting` fields.
    """

    kind = "metric_learning"

    def check_predictable(self, where: str) -> None:
        """Its hit embedding feeds the edge classifier's graph construction, not a predictions file."""
        raise ConfigError(
            f"{where} is a metric-learning stage: its hit embedding feeds the edge classifier "
            "(train it with experiment=tracking/edge_classifier model.representation.constructor=embedding "
            "model.representation.constructors.embedding.checkpoint=<this checkpoint>) and that stage's "
            "checkpoint is what recoml.predict takes"
        )

    def __init__(
        self,
        name: str = "metric_learning",
        target: str = "edge_y",
        emb_dim: int = 12,
        margin: float = 0.1,
        r_train: float = 0.1,
        knn_train: int = 50,
        randomisation: float = 1.0,
        r_infer: float = 0.1,
        knn_infer: int = 50,
        weighting: Mapping[str, float] | None = None,
        monitor: str = "val/loss",
        monitor_mode: str = "min",
    ) -> None:
        super().__init__(name, target, monitor, monitor_mode)
        if emb_dim < 1 or margin <= 0 or r_infer <= 0:
            raise ConfigError("metric_learning: emb_dim >= 1, margin > 0 and r_infer > 0 are needed")
        self.out_dim = int(emb_dim)
        self.margin = float(margin)
        self.r_train = float(r_train)
        self.knn_train = int(knn_train)
        self.randomisation = float(randomisation)
        self.r_infer = float(r_infer)
        self.knn_infer = int(knn_infer)
        self.weighting = EdgeWeighting(**dict(weighting or {}))

    def loss(self, output: EmbeddingOutput, batch: HitBatch) -> torch.Tensor:  # type: ignore[override]
        graph = _graph_with_truth(output, self.name, EmbeddingOutput)
        assert graph.truth is not None
        pairs, y, w = training_pairs(
            output.embedding,
            graph.hits,
            graph.truth,
            self.weighting,
            self.r_train,
            self.knn_train,
            self.randomisation,
        )
        return hinge_loss(output.embedding.float(), pairs, y, w, self.margin)

    def inference_graph(self, output: EmbeddingOutput) -> torch.Tensor:
        return embedding_graph(output.embedding, output.graph.hits, self.r_infer, self.knn_infer)

    def predict(self, output: EmbeddingOutput) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return {"embedding": output.embedding.float(), "edge_index": self.inference_graph(output)}

    def truth(self, batch: HitBatch) -> dict[str, torch.Tensor]:
        return {}

    def make_metrics(self) -> MetricCollection:
        return MetricCollection(dict(graph_metrics()), compute_groups=False)

    def update_metrics(self, metrics: MetricCollection, output: EmbeddingOutput, batch: HitBatch) -> None:  # type: ignore[override]
        graph = _graph_with_truth(output, self.name, EmbeddingOutput)
        assert graph.truth is not None
        edges = self.inference_graph(output)
        y, target, _ = edge_truth(edges, graph.truth, self.weighting)
        metrics.update(
            edge_y=y, edge_target=target, truth_target=graph.truth.truth_target, n_events=graph.num_graphs
        )


class TrackerHitClassificationTask(HitClassificationTask):
    """Hits of particles above ``pt_min`` (GeV, true pT at the hit) against the rest (noise, low pT): the
    hit filtering of GNN triggers and of acorn's filter stage. Needs a node-level model on a tracker graph
    (``experiment=tracking/hit_classification``)."""

    def __init__(
        self,
        name: str = "hit_classification",
        target: str = "particle_id",
        pt_min: float = 1.0,
        threshold: float = 0.5,
        monitor: str = "val/auroc",
        monitor_mode: str = "max",
    ) -> None:
        super().__init__(name, target, threshold, monitor, monitor_mode)
        self.pt_min = float(pt_min)

    @property
    def hit_fields(self) -> tuple[str, ...]:
        return _TRUTH_STORE_FIELDS

    def hit_truth(self, batch: HitBatch) -> torch.Tensor:
        missing = [f for f in TRUTH_FIELDS if f not in batch.hits]
        if missing:
            raise DataError(
                f"task={self.name} on tracker hits needs {['hit_' + m for m in missing]}; the batch has "
                f"{['hit_' + k for k in sorted(batch.hits)]}"
            )
        pt = torch.hypot(batch.hits["tpx"].float(), batch.hits["tpy"].float())
        return ((batch.hits["particle_id"] != 0) & (pt > self.pt_min)).float()
