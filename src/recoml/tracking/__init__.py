"""GNN track reconstruction: graph construction, edge truth, track building, matching and metrics.

The pieces, in the order a batch of tracker events meets them (docs/tracking.md):
:class:`~recoml.tracking.graph.TrackGraphBuilder` (hits -> features, candidate edges from a
:class:`~recoml.tracking.construction.GeometricConstructor` or an
:class:`~recoml.tracking.metric_learning.EmbeddingConstructor`, truth and weights), the Interaction Network
(:mod:`recoml.models.interaction_network`), :func:`~recoml.tracking.building.build_tracks_cc` /
:func:`~recoml.tracking.building.build_tracks_walkthrough`, :func:`~recoml.tracking.matching.match_tracks` and
:func:`~recoml.tracking.matching.tracking_metrics`; :class:`~recoml.tracking.pipeline.TrackingPipeline` chains
them and :func:`~recoml.tracking.report.evaluate_checkpoint` writes the report.
"""

from recoml.tracking.building import build_tracks_cc, build_tracks_walkthrough, connected_components
from recoml.tracking.construction import GeometricConstructor, layer_pairs_from_geometry
from recoml.tracking.graph import (
    EdgeOutput,
    EmbeddingOutput,
    TrackGraph,
    TrackGraphBuilder,
    TrackHitGraphBuilder,
)
from recoml.tracking.hits import TrackerGeometry, TrackHits
from recoml.tracking.matching import TrackMatch, match_tracks, tracking_metrics
from recoml.tracking.metric_learning import EmbeddingConstructor
from recoml.tracking.pipeline import TrackingPipeline, evaluate_tracking, iterate_store
from recoml.tracking.report import evaluate_checkpoint, write_tracking_report
from recoml.tracking.truth import EdgeWeighting, edge_truth, hit_truth

__all__ = [
    "EdgeOutput",
    "EdgeWeighting",
    "EmbeddingConstructor",
    "EmbeddingOutput",
    "GeometricConstructor",
    "TrackGraph",
    "TrackGraphBuilder",
    "TrackHitGraphBuilder",
    "TrackHits",
    "TrackMatch",
    "TrackerGeometry",
    "TrackingPipeline",
    "build_tracks_cc",
    "build_tracks_walkthrough",
    "connected_components",
    "edge_truth",
    "evaluate_checkpoint",
    "evaluate_tracking",
    "hit_truth",
    "iterate_store",
    "layer_pairs_from_geometry",
    "match_tracks",
    "tracking_metrics",
    "write_tracking_report",
]
