"""GNN track reconstruction: graph construction, edge truth, track building, matching and metrics.

The pieces, in the order a batch of tracker events meets them (docs/tracking.md):
:class:`~.graph.TrackGraphBuilder` (hits -> features, candidate edges from a
:class:`~.construction.GeometricConstructor` or an :class:`~.metric_learning.EmbeddingConstructor`, truth and
weights), the Interaction Network (:mod:`.models.interaction_network`), :func:`~.building.build_tracks_cc` /
:func:`~.building.build_tracks_walkthrough`, :func:`~.matching.match_tracks` and
:func:`~.matching.tracking_metrics`; :class:`~.pipeline.TrackingPipeline` chains them and
:func:`~.report.evaluate_checkpoint` predicts and evaluates in one call (all in
:mod:`recoml.families.tracking`).
"""

from recoml.families.tracking.building import build_tracks_cc, build_tracks_walkthrough, connected_components
from recoml.families.tracking.construction import GeometricConstructor, layer_pairs_from_geometry
from recoml.families.tracking.graph import (
    EdgeOutput,
    EmbeddingOutput,
    TrackGraph,
    TrackGraphBuilder,
    TrackHitGraphBuilder,
)
from recoml.families.tracking.hits import TrackerGeometry, TrackHits
from recoml.families.tracking.matching import TrackMatch, match_tracks, tracking_metrics
from recoml.families.tracking.metric_learning import EmbeddingConstructor
from recoml.families.tracking.pipeline import TrackingPipeline, evaluate_tracking, iterate_store
from recoml.families.tracking.report import evaluate_checkpoint
from recoml.families.tracking.truth import EdgeWeighting, edge_truth, hit_truth

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
]
