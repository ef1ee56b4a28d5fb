"""The GNN tracking chain at inference: graph construction -> edge classification -> track building ->
(with truth) matching and metrics, event batch by event batch, with the time each stage takes.

:meth:`TrackingPipeline.from_checkpoint` takes everything from an edge-classifier checkpoint (detector,
graph builder with its constructor, Interaction Network, score cut), so a trained run is evaluated from its
checkpoint alone; :func:`evaluate_tracking` runs it over a store split and returns metrics that
``recoml.evaluate`` reports from a predictions file.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from recoml import load_model
from recoml.contracts.batch import HitBatch
from recoml.data.datamodule import EventDataModule
from recoml.data.dataset import EventDataset
from recoml.data.store import open_store
from recoml.errors import ConfigError, DataError
from recoml.families.tracking.building import build_tracks_cc, build_tracks_walkthrough
from recoml.families.tracking.evaluation import tracking_evaluation
from recoml.families.tracking.graph import TrackGraph, TrackGraphBuilder
from recoml.families.tracking.hits import COORDINATE_FIELDS, TRUTH_FIELDS
from recoml.families.tracking.matching import TrackMatch
from recoml.families.tracking.models.interaction_network import EdgeClassifier

__all__ = ["PipelineResult", "TrackingPipeline", "evaluate_tracking", "iterate_store"]

log = logging.getLogger(__name__)

#: Store fields the evaluation reads: coordinates, module ids, truth and the true pz (for eta).
EVAL_HIT_FIELDS: tuple[str, ...] = tuple(
    f"hit_{n}" for n in (*COORDINATE_FIELDS, "module_id", *TRUTH_FIELDS, "tpz")
)
BUILDERS = ("cc", "walkthrough")
#: Hit truth the evaluation reads from a batch beyond the particle id (TrackML's hit weight when present).
TRUTH_COLUMNS = ("tpx", "tpy", "tpz", "weight")


@dataclass
class PipelineResult:
    """One batch through the chain: the graph, edge scores, track label per hit, seconds per stage."""

    graph: TrackGraph
    scores: torch.Tensor
    tracks: torch.Tensor
    seconds: dict[str, float] = field(default_factory=dict)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class TrackingPipeline(nn.Module):
    """``builder`` (HitBatch -> TrackGraph) + ``classifier`` (TrackGraph -> edge logits, via an
    :class:`~recoml.families.tracking.models.interaction_network.EdgeClassifier` or any module with
    ``.network``) + track
    building (``cc`` or ``walkthrough``) at ``score_cut``. Without a classifier the edges all score 1
    (tracks = components of the constructed graph)."""

    def __init__(
        self,
        builder: TrackGraphBuilder,
        classifier: nn.Module | None = None,
        score_cut: float = 0.5,
        method: str = "cc",
        min_hits: int = 3,
        walk_min: float | None = None,
        walk_add: float | None = None,
        cc_backend: str = "scipy",
    ) -> None:
        super().__init__()
        if method not in BUILDERS:
            raise ConfigError(f"track building method must be one of {BUILDERS}, got '{method}'")
        if not 0 <= score_cut < 1:
            raise ConfigError(f"score_cut must be in [0, 1), got {score_cut}")
        self.builder = builder
        self.classifier = classifier
        self.score_cut = float(score_cut)
        self.method = method
        self.min_hits = int(min_hits)
        self.walk_min = walk_min
        self.walk_add = walk_add
        self.cc_backend = cc_backend
        #: The training run's resolved config when built by :meth:`from_checkpoint`.
        self.config: dict[str, Any] = {}

    @classmethod
    def from_checkpoint(
        cls,
        ckpt_path: str | os.PathLike,
        map_location: str = "cpu",
        trust: Sequence[str] = (),
        **options: Any,
    ):
        """The pipeline of an edge-classifier run (``experiment=tracking/edge_classifier``), read by the safe
        loader: nothing in the file runs; ``trust`` lists the extra ``_target_``s the user allows (also for
        the metric-learning checkpoint the model reads)."""

        module = load_model(str(ckpt_path), map_location=map_location, trust=list(trust))
        if not isinstance(module.net, EdgeClassifier) or not isinstance(
            module.representation, TrackGraphBuilder
        ):
            cfg = module.hparams.get("config", {})
            raise ConfigError(
                f"{ckpt_path} was trained for task={cfg.get('task', {}).get('name')}, model="
                f"{cfg.get('model', {}).get('name')}; track building needs an edge-classifier checkpoint "
                "(experiment=tracking/edge_classifier)"
            )
        options.setdefault("score_cut", getattr(module.task, "threshold", 0.5))
        pipeline = cls(module.representation, module.net, **options).eval()
        pipeline.config = dict(module.hparams.get("config", {}))  # the run's resolved config
        return pipeline

    @property
    def device(self) -> torch.device:
        return next(iter(self.builder.buffers())).device

    @torch.no_grad()
    def forward(self, batch: HitBatch) -> PipelineResult:
        device = self.device
        batch = batch.to(device)
        seconds: dict[str, float] = {}
        t0 = time.perf_counter()
        graph = self.builder(batch)
        _sync(device)
        seconds["graph_construction"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        if self.classifier is None:
            scores = torch.ones(graph.num_edges, device=device)
        else:
            out = self.classifier(graph)
            scores = getattr(out, "logits", out).float().sigmoid()
        _sync(device)
        seconds["edge_classification"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        n = graph.num_nodes
        if self.method == "cc":
            tracks = build_tracks_cc(
                graph.edge_index, scores, n, self.score_cut, self.min_hits, self.cc_backend
            )
        else:
            tracks = build_tracks_walkthrough(
                graph.edge_index, scores, n, self.score_cut, self.walk_min, self.min_hits, self.walk_add
            )
        _sync(device)
        seconds["track_building"] = time.perf_counter() - t0
        return PipelineResult(graph, scores, tracks, seconds)


def iterate_store(
    path: str | os.PathLike,
    split: str = "test",
    batch_size: int = 1,
    split_path: str | os.PathLike | None = None,
    hit_fields: Sequence[str] = EVAL_HIT_FIELDS,
    max_events: int | None = None,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> Iterator[HitBatch]:
    """Batches of a store's split (``train``/``val``/``test``/``all``) with the fields the evaluation reads.

    Splits are found as the trainer finds them (``split_path``, else ``<stem>_splits.npz`` made with
    ``fractions`` and ``seed``). A store without truth fields is refused with the list of what is missing.
    """

    store = open_store(path)
    present = set(store.object_types.get("hits", []))
    missing = [f for f in hit_fields if f not in present]
    if missing:
        raise DataError(
            f"{path}: tracking evaluation needs hit fields {missing} (truth: hit_particle_id, "
            "hit_tpx/tpy/tpz); "
            f"the store has {sorted(present)}"
        )
    if split == "all":
        indices = np.arange(store.n_events)
    else:
        dm = EventDataModule(
            path,
            split_path=split_path,
            hit_fields=hit_fields,
            target_fields=(),
            fractions=fractions,
            split_seed=seed,
        )
        indices = dm.split_indices(split)
    if max_events is not None:
        indices = indices[: int(max_events)]
    ds = EventDataset(store, indices=indices, hit_fields=hit_fields, target_fields=())
    for start in range(0, len(ds), batch_size):
        yield ds[list(range(start, min(len(ds), start + batch_size)))]


def evaluate_tracking(
    pipeline: TrackingPipeline,
    batches: Iterable[HitBatch],
    pt_min: float | None = None,
    fraction: float = 0.5,
    purities: Sequence[float] = (0.9, 0.95),
    **options: Any,
) -> tuple[dict[str, Any], TrackMatch]:
    """Edge and track metrics over ``batches`` (with truth); returns ``(metrics, matched tracks)``.

    The batches go through the pipeline (graphs, scores and tracks, each stage timed); the metrics are
    :func:`~recoml.families.tracking.evaluation.tracking_evaluation`'s, as ``recoml.evaluate`` reports
    them from a predictions file: ``edges`` (graph construction and edge classification at the score cut,
    the best edge efficiency at each of ``purities``), ``tracks``, ``score_histograms``, ``timing`` (mean
    seconds per event of each stage). ``options`` are the evaluation's target selection (``eta_max``,
    ``primary_only``, ...).
    """
    pt_min = pipeline.builder.pt_min if pt_min is None else float(pt_min)
    parts: dict[str, list[np.ndarray]] = {}
    seconds: dict[str, float] = {}
    n_events = n_hits = n_truth_target = n_labels = 0

    def add(**arrays: np.ndarray) -> None:
        for k, v in arrays.items():
            parts.setdefault(k, []).append(v)

    for batch in batches:
        if "particle_id" not in batch.hits or "tpz" not in batch.hits:
            raise DataError(
                "tracking evaluation needs hit truth (hit_particle_id, hit_tpx/tpy/tpz); the batch has "
                f"{['hit_' + k for k in sorted(batch.hits)]}"
            )
        result = pipeline(batch)
        graph = result.graph
        assert graph.truth is not None and graph.edge_y is not None and graph.edge_target is not None
        for k, v in result.seconds.items():
            seconds[k] = seconds.get(k, 0.0) + v
        src, dst = graph.edge_index.cpu().numpy()
        tracks = result.tracks.cpu().numpy()
        add(
            src=src + n_hits,
            dst=dst + n_hits,
            score=result.scores.detach().float().cpu().numpy(),
            truth=graph.edge_y.cpu().numpy(),
            target=graph.edge_target.cpu().numpy(),
            hit_event=graph.hits.batch.cpu().numpy() + n_events,
            tracks=np.where(tracks >= 0, tracks + n_labels, -1),
            hit_particle_id=graph.hits.particle_id.cpu().numpy(),
            **{f"hit_{k}": batch.hits[k].cpu().numpy() for k in TRUTH_COLUMNS if k in batch.hits},
            **{f"hit_{a}": graph.hits.pos[:, i].cpu().numpy() for i, a in enumerate("xyz")},
        )
        n_truth_target += int(graph.truth.truth_target.sum())
        n_labels += int(tracks.max()) + 1 if len(tracks) else 0
        n_events += graph.num_graphs
        n_hits += graph.num_nodes
    flat = {k: np.concatenate(v) for k, v in parts.items()}
    empty = np.zeros(0, np.int64)
    edges = {k: flat.get(k, empty) for k in ("src", "dst", "score", "truth", "target")}
    hits = {k: v for k, v in flat.items() if k.startswith("hit_") and k != "hit_event"}
    settings = dict(options) | {
        "track_method": pipeline.method,
        "matching_fraction": fraction,
        "purities": tuple(purities),
        "min_track_hits": pipeline.min_hits,
    }
    metrics, match = tracking_evaluation(
        edges,
        hits or {k: empty for k in ("hit_particle_id", "hit_tpx", "hit_tpy", "hit_tpz")},
        flat.get("hit_event", empty),
        n_events,
        n_truth_target,
        settings,
        score_cut=pipeline.score_cut,
        pt_min=pt_min,
        min_hits=pipeline.builder.min_hits,
        bfield=pipeline.builder.geometry.bfield,
        tracks=flat.get("tracks", empty),
    )
    metrics["timing"] = {k: v / max(n_events, 1) for k, v in seconds.items()}
    return metrics, match
