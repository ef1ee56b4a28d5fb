"""The event graph every tracking stage passes on, and the on-device builder that makes it from a HitBatch.

:class:`TrackGraphBuilder` is a representation in the sense of ``recoml.data.representations``: an
``nn.Module`` built from the detector that turns a :class:`~recoml.contracts.batch.HitBatch` into the model
input on the device. It computes hit features, runs a graph constructor (geometric, metric learning, or
none for the metric-learning stage itself) and, when the batch has truth, the truth graph and per-edge
labels and weights. Models return :class:`EdgeOutput` / :class:`EmbeddingOutput`, which keep the graph, so
a task reads the truth of exactly the edges that were scored.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from recoml.contracts.batch import HitBatch
from recoml.contracts.representation import Representation
from recoml.errors import ConfigError
from recoml.families.tracking.construction import truth_layer_pairs
from recoml.families.tracking.detector import TrackerDetector
from recoml.families.tracking.hits import TrackerGeometry, TrackHits
from recoml.families.tracking.truth import EdgeWeighting, HitTruth, edge_truth, hit_truth

__all__ = [
    "EDGE_FEATURES",
    "NODE_FEATURES",
    "EdgeOutput",
    "EmbeddingOutput",
    "TrackGraph",
    "TrackGraphBuilder",
    "TrackHitGraphBuilder",
    "edge_features",
]

log = logging.getLogger(__name__)

#: Hit features a builder can compute (lengths in units of the envelope radius, angles in units of pi).
NODE_FEATURES: tuple[str, ...] = ("r", "phi", "z", "eta", "x", "y", "cos_phi", "sin_phi")
#: Edge features (inner hit -> outer hit): differences and the two cut variables, with fixed scales.
EDGE_FEATURES: dict[str, float] = {
    "dr": 1 / 100.0,  # mm
    "dphi": 50.0,  # rad
    "dz": 1 / 100.0,  # mm
    "deta": 10.0,
    "phi_slope": 1000.0,  # rad / mm
    "z0": 1 / 100.0,  # mm
}


@dataclass
class TrackGraph:
    """A batch of event graphs, hits in batch order. Truth fields are None without truth in the store.

    ``edge_index`` (2, E): inner hit, outer hit; ``edge_attr`` (E, D) or None; ``edge_y`` true edges,
    ``edge_target`` true edges of target particles, ``edge_weight`` training weights.
    """

    x: torch.Tensor
    hits: TrackHits
    edge_index: torch.Tensor
    edge_attr: torch.Tensor | None = None
    truth: HitTruth | None = None
    edge_y: torch.Tensor | None = None
    edge_target: torch.Tensor | None = None
    edge_weight: torch.Tensor | None = None

    # GraphInput protocol (node-level models of the zoo read these).
    @property
    def pos(self) -> torch.Tensor:
        return self.hits.pos

    @property
    def batch(self) -> torch.Tensor:
        return self.hits.batch

    @property
    def num_graphs(self) -> int:
        return self.hits.num_events

    @property
    def num_nodes(self) -> int:
        return self.x.shape[0]

    @property
    def num_edges(self) -> int:
        return self.edge_index.shape[1]

    @property
    def edge_batch(self) -> torch.Tensor:
        """Event of every edge."""
        return self.hits.batch[self.edge_index[0]]


@dataclass
class EdgeOutput:
    """Edge logits with the graph they score."""

    logits: torch.Tensor
    graph: TrackGraph


@dataclass
class EmbeddingOutput:
    """Hit embeddings with the graph of their hits."""

    embedding: torch.Tensor
    graph: TrackGraph


def node_features(hits: TrackHits, names: Sequence[str], scale: float) -> torch.Tensor:
    """``(N, F)`` hit features in the order of ``names`` (lengths / ``scale``, angles / pi)."""
    r, phi, z = hits.r, hits.phi, hits.z
    cols = []
    for name in names:
        if name == "r":
            cols.append(r / scale)
        elif name == "phi":
            cols.append(phi / math.pi)
        elif name == "z":
            cols.append(z / scale)
        elif name == "eta":
            cols.append(torch.asinh(z / r.clamp_min(1e-6)) / 2.0)
        elif name == "x":
            cols.append(hits.pos[:, 0] / scale)
        elif name == "y":
            cols.append(hits.pos[:, 1] / scale)
        elif name == "cos_phi":
            cols.append(torch.cos(phi))
        elif name == "sin_phi":
            cols.append(torch.sin(phi))
        else:
            raise ConfigError(f"unknown hit feature '{name}'; known: {list(NODE_FEATURES)}")
    if not cols:
        return hits.pos.new_zeros(hits.num_hits, 0)
    return torch.stack(cols, dim=1).float()


def edge_features(hits: TrackHits, edge_index: torch.Tensor, names: Sequence[str]) -> torch.Tensor:
    """``(E, D)`` features of edges (inner -> outer), scaled by :data:`EDGE_FEATURES`."""
    src, dst = edge_index
    r, phi, z = hits.r, hits.phi, hits.z
    dr = r[dst] - r[src]
    dz = z[dst] - z[src]
    dphi = torch.remainder(phi[dst] - phi[src] + math.pi, 2 * math.pi) - math.pi
    safe_dr = torch.where(dr.abs() < 1e-3, torch.full_like(dr, 1e-3), dr)
    cols = []
    for name in names:
        if name == "dr":
            v = dr
        elif name == "dz":
            v = dz
        elif name == "dphi":
            v = dphi
        elif name == "deta":
            eta = torch.asinh(z / r.clamp_min(1e-6))
            v = eta[dst] - eta[src]
        elif name == "phi_slope":
            v = dphi / safe_dr
        elif name == "z0":
            v = z[src] - r[src] * dz / safe_dr
        else:
            raise ConfigError(f"unknown edge feature '{name}'; known: {list(EDGE_FEATURES)}")
        cols.append((v * EDGE_FEATURES[name]).clamp(-10.0, 10.0))
    if not cols:
        return hits.pos.new_zeros(edge_index.shape[1], 0)
    return torch.stack(cols, dim=1).float()


class TrackGraphBuilder(Representation):
    """``forward(batch) -> TrackGraph``: hits, features, candidate edges and (with truth) their labels.

    ``constructor``: a module ``TrackHits -> edge_index``, a factory called with ``detector=`` (Hydra
    ``_partial_``), or the name of one of ``constructors`` (so a config offers several and picks one on the
    command line: ``model.representation.constructor=embedding``); None makes no candidate edges (the
    metric-learning stage). ``features`` are normalized
    with fixed detector scales (kept in a :class:`FeatureNormalizer` for the checkpoint); nothing is
    fitted from data except what the constructor learns in :meth:`fit_statistics`. ``pt_min`` and
    ``min_hits`` define target particles; ``weighting`` holds :class:`EdgeWeighting` fields. ``truth``:
    None uses truth when the batch has it, True demands it (training), False ignores it.
    """

    builds = "track_graph"
    hit_fields = ("hit_x", "hit_y", "hit_z", "hit_volume_id", "hit_layer_id", "hit_module_id")

    def __init__(
        self,
        detector: TrackerDetector,
        constructor: str | nn.Module | Callable[..., nn.Module] | None = None,
        constructors: Mapping[str, Callable[..., nn.Module]] | None = None,
        features: Sequence[str] = ("r", "phi", "z"),
        edge_features: Sequence[str] = tuple(EDGE_FEATURES),
        pt_min: float = 1.0,
        min_hits: int = 3,
        weighting: Mapping[str, float] | None = None,
        truth: bool | None = None,
    ) -> None:
        super().__init__()
        self.geometry = TrackerGeometry(detector)
        for name in features:
            if name not in NODE_FEATURES:
                raise ConfigError(f"unknown hit feature '{name}'; known: {list(NODE_FEATURES)}")
        for name in edge_features:
            if name not in EDGE_FEATURES:
                raise ConfigError(f"unknown edge feature '{name}'; known: {list(EDGE_FEATURES)}")
        self.features = tuple(features)
        self.edge_feature_names = tuple(edge_features) if constructor is not None else ()
        self.scale = float(detector.radius)
        self.pt_min = float(pt_min)
        self.min_hits = int(min_hits)
        self.weighting = EdgeWeighting(**dict(weighting or {}))
        self.truth = truth
        if isinstance(constructor, str):
            options = dict(constructors or {})
            if constructor not in options:
                raise ConfigError(
                    f"representation.constructor='{constructor}' is not among representation.constructors "
                    f"{sorted(options)}"
                )
            constructor = options[constructor]
        if constructor is not None and not isinstance(constructor, nn.Module):
            constructor = constructor(detector=detector)
        self.constructor = constructor

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.features

    @property
    def out_channels(self) -> int:
        return len(self.features)

    def input_dims(self) -> dict[str, int]:
        """Node feature width, and the edge feature width when candidate edges carry features."""
        dims = {"in_channels": self.out_channels}
        return dims | {"edge_channels": self.edge_channels} if self.edge_channels else dims

    @property
    def edge_channels(self) -> int:
        return len(self.edge_feature_names)

    def node_features(self, hits: TrackHits) -> torch.Tensor:
        return node_features(hits, self.features, self.scale)

    def fit_statistics(self, batches: Iterable[HitBatch]) -> None:
        """Let the constructor learn from training truth (e.g. layer pairs); nothing else is fitted."""
        fit = getattr(self.constructor, "fit", None)
        if fit is None:
            return

        pairs = []
        for batch in batches:
            hits = self.geometry.hits(batch, truth=True, stage="layer-pair learning")
            truth = hit_truth(hits, 0.0, 1)
            pairs.append(truth_layer_pairs(hits.layer, truth.truth_index))
        fit(pairs)

    def forward(self, batch: HitBatch) -> TrackGraph:
        hits = self.geometry.hits(batch, truth=self.truth, stage=type(self).__name__)
        x = self.node_features(hits)
        if self.constructor is not None:
            with torch.no_grad():
                edge_index = self.constructor(hits)
        else:
            edge_index = torch.zeros(2, 0, dtype=torch.int64, device=x.device)
        edge_attr = (
            edge_features(hits, edge_index, self.edge_feature_names) if self.edge_feature_names else None
        )
        graph = TrackGraph(x=x, hits=hits, edge_index=edge_index, edge_attr=edge_attr)
        if hits.has_truth:
            graph.truth = hit_truth(hits, self.pt_min, self.min_hits)
            graph.edge_y, graph.edge_target, graph.edge_weight = edge_truth(
                edge_index, graph.truth, self.weighting
            )
        return graph

    def extra_repr(self) -> str:
        return f"features={self.features}, edge_features={self.edge_feature_names}, pt_min={self.pt_min}"


class TrackHitGraphBuilder(TrackGraphBuilder):
    """The same graph offered to the node-level models of the zoo (``accepts = "graph"``): the
    candidate edges are made undirected so that messages flow both ways (hit classification)."""

    builds = "graph"

    def input_dims(self) -> dict[str, int]:
        return {"in_channels": self.out_channels}

    def forward(self, batch: HitBatch) -> TrackGraph:
        graph = super().forward(batch)
        graph.edge_index = torch.cat([graph.edge_index, graph.edge_index.flip(0)], dim=1)
        return graph


def describe_graph(graph: TrackGraph) -> dict[str, Any]:
    """Sizes for logs: hits, edges, true and target edges."""
    out: dict[str, Any] = {"hits": graph.num_nodes, "edges": graph.num_edges, "events": graph.num_graphs}
    if graph.edge_y is not None:
        out["true_edges"] = int(graph.edge_y.sum())
        out["target_edges"] = int(graph.edge_target.sum())  # type: ignore[union-attr]
    return out
