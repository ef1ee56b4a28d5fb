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
from recoml.families.tracking.graph import TrackGraph, TrackGraphBuilder
from recoml.families.tracking.hits import COORDINATE_FIELDS, TRUTH_FIELDS
from recoml.families.tracking.matching import TrackMatch, match_tracks, tracking_metrics
from recoml.families.tracking.metrics import edge_classification_metrics
from recoml.families.tracking.models.interaction_network import EdgeClassifier
from recoml.families.tracking.trackml_score import trackml_hit_weights, trackml_score

__all__ = ["PipelineResult", "TrackingPipeline", "evaluate_tracking", "iterate_store"]

log = logging.getLogger(__name__)

#: Store fields the evaluation reads: coordinates, module ids, truth and the true pz (for eta).
EVAL_HIT_FIELDS: tuple[str, ...] = tuple(
    f"hit_{n}" for n in (*COORDINATE_FIELDS, "module_id", *TRUTH_FIELDS, "tpz")
)
BUILDERS = ("cc", "walkthrough")


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


def working_points(
    hist: dict[str, np.ndarray], edges: np.ndarray, purities: Sequence[float]
) -> dict[str, float]:
    """Best edge efficiency reachable at each purity, and the score cut that gives it, from score histograms
    of target, other true and false edges (a cut at a bin edge keeps the bins above it)."""

    def above(h: np.ndarray) -> np.ndarray:
        return np.cumsum(h[::-1])[::-1]  # count with score >= the lower edge of each bin

    tgt, true_other, false = above(hist["target"]), above(hist["other_true"]), above(hist["false"])
    total_target = max(float(hist["target"].sum()), 1.0)
    kept = tgt + true_other + false
    eff = tgt / total_target
    purity = np.divide(tgt + true_other, kept, out=np.zeros_like(eff), where=kept > 0)
    out: dict[str, float] = {}
    for p in purities:
        ok = (purity >= p) & (kept > 0)
        key = f"{p:g}".replace(".", "")
        if ok.any():
            i = int(np.flatnonzero(ok)[np.argmax(eff[ok])])
            out[f"efficiency_at_purity_{key}"] = float(eff[i])
            out[f"cut_at_purity_{key}"] = float(edges[i])
        else:
            out[f"efficiency_at_purity_{key}"] = 0.0
            out[f"cut_at_purity_{key}"] = 1.0
    return out


def evaluate_tracking(
    pipeline: TrackingPipeline,
    batches: Iterable[HitBatch],
    pt_min: float | None = None,
    fraction: float = 0.5,
    purities: Sequence[float] = (0.9, 0.95),
) -> tuple[dict[str, Any], TrackMatch]:
    """Edge and track metrics over ``batches`` (with truth); returns ``(metrics, matched tracks)``.

    ``metrics`` holds ``edges`` (graph construction and edge classification at the score cut),
    ``tracks`` (:func:`~recoml.families.tracking.matching.tracking_metrics`), ``timing`` (mean seconds
    per event of each stage), ``score_histograms`` (edge scores of target, other true and false edges;
    from them the best edge efficiency at each of ``purities`` and its cut) and the settings used.
    """
    pt_min = pipeline.builder.pt_min if pt_min is None else float(pt_min)
    edge_metrics = edge_classification_metrics(pipeline.score_cut)
    matches: list[TrackMatch] = []
    score_parts: list[tuple[np.ndarray, ...]] = []
    seconds: dict[str, float] = {}
    n_events = 0
    n_hits = 0
    hist_bins = np.linspace(0, 1, 201)
    hist = {key: np.zeros(200) for key in ("target", "other_true", "false")}
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
        scores = result.scores.detach().float()
        edge_metrics.update(
            scores=scores,
            edge_y=graph.edge_y,
            edge_target=graph.edge_target,
            truth_target=graph.truth.truth_target,
            n_events=graph.num_graphs,
        )
        s = scores.cpu().numpy()
        y, target = graph.edge_y.cpu().numpy(), graph.edge_target.cpu().numpy()
        hist["target"] += np.histogram(s[target], hist_bins)[0]
        hist["other_true"] += np.histogram(s[y & ~target], hist_bins)[0]
        hist["false"] += np.histogram(s[~y], hist_bins)[0]
        hits = graph.hits
        tpz = batch.hits["tpz"].float().to(hits.pos.device)
        hit_pt = torch.hypot(batch.hits["tpx"].float(), batch.hits["tpy"].float()).to(hits.pos.device)
        hit_eta = torch.asinh(tpz / hit_pt.clamp_min(1e-9))
        matches.append(
            match_tracks(
                hits.batch.cpu().numpy() + n_events,
                hits.particle_id.cpu().numpy(),
                result.tracks.cpu().numpy(),
                graph.truth.particle_pt.cpu().numpy(),
                hit_eta.cpu().numpy(),
                hits.pos.cpu().numpy(),
                pt_min=pt_min,
                min_particle_hits=pipeline.builder.min_hits,
                min_track_hits=pipeline.min_hits,
                fraction=fraction,
                bfield=pipeline.builder.geometry.bfield,
            )
        )
        hit_event = hits.batch.cpu().numpy() + n_events
        hit_pid = hits.particle_id.cpu().numpy()
        if "weight" in batch.hits:
            weight = batch.hits["weight"].double().cpu().numpy()
        else:
            distance = hits.pos.double().norm(dim=1).cpu().numpy()
            weight = trackml_hit_weights(hit_event, hit_pid, graph.truth.particle_pt.cpu().numpy(), distance)
        score_parts.append((hit_event, hit_pid, result.tracks.cpu().numpy(), weight))
        n_events += graph.num_graphs
        n_hits += graph.num_nodes
    match = TrackMatch.concat(matches)
    track_metrics = tracking_metrics(match, pt_min=pt_min)
    columns = [np.concatenate(c) for c in zip(*score_parts)] if score_parts else [np.zeros(0)] * 4
    track_metrics["trackml_score"] = trackml_score(*columns)["score"]
    edges = {k: float(v) for k, v in edge_metrics.compute().items()}
    metrics: dict[str, Any] = {
        "n_events": n_events,
        "hits_per_event": n_hits / max(n_events, 1),
        "score_cut": pipeline.score_cut,
        "track_building": pipeline.method,
        "pt_min": pt_min,
        "edges": edges | working_points(hist, hist_bins, purities),
        "tracks": track_metrics,
        "timing": {k: v / max(n_events, 1) for k, v in seconds.items()},
        "score_histograms": {"edges": hist_bins.tolist(), **{k: v.tolist() for k, v in hist.items()}},
    }
    return metrics, match
