"""Edge classification and track reconstruction from an edge predictions file (``recoml.predict`` on an
edge-classifier checkpoint; layout in :mod:`recoml.families.tracking.predictions`).

Edges: efficiency, purity and target purity at the score cut, AUC and ROC of target against false edges,
graph efficiency, purity and size, and the best efficiency at fixed purities. Tracks: built from the stored
edges (connected components or walkthrough at the score cut), matched to particles with the double-majority
and ATLAS definitions: efficiency, fake rate and duplicate rate, overall and vs pT and eta. Every definition
is :mod:`recoml.families.tracking`'s (metrics, building, matching) and the figures are
:func:`recoml.families.tracking.report.tracking_figures`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from recoml.errors import ConfigError, DataError
from recoml.evaluation.checks import check_binary
from recoml.evaluation.registry import Evaluator, PlotSink, SectionResult, register
from recoml.families.tracking.building import build_tracks_cc, build_tracks_walkthrough
from recoml.families.tracking.matching import TargetSelection, match_tracks, tracking_metrics
from recoml.families.tracking.metrics import edge_classification_metrics
from recoml.families.tracking.pipeline import working_points
from recoml.families.tracking.predictions import hit_pt_eta
from recoml.families.tracking.report import metric_rows, tracking_figures
from recoml.families.tracking.trackml_score import trackml_hit_weights, trackml_score
from recoml.metrics import physics as pm
from recoml.plotting import Series, plot_roc
from recoml.prediction.reader import SectionData

#: What track building and matching read from the file (beyond the edges themselves).
TRUTH_FIELDS = ("edge_truth", "edge_target", "hit_particle_id", "hit_tpx", "hit_tpy", "hit_tpz")
HIT_POSITIONS = ("hit_x", "hit_y", "hit_z")
HIST_BINS = np.linspace(0.0, 1.0, 201)


def _track_labels(
    edge_index: torch.Tensor, scores: torch.Tensor, n_hits: int, method: str, cut: float, opts: dict[str, Any]
) -> torch.Tensor:

    min_hits = int(opts.get("min_track_hits", 3))
    if method == "cc":
        return build_tracks_cc(edge_index, scores, n_hits, cut, min_hits)
    if method == "walkthrough":
        return build_tracks_walkthrough(
            edge_index, scores, n_hits, cut, opts.get("walk_min"), min_hits, opts.get("walk_add")
        )
    raise ConfigError(f"options.track_method must be 'cc' or 'walkthrough', got '{method}'")


def edge_tracking_metrics(run: SectionData, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The metrics of :func:`~recoml.families.tracking.pipeline.evaluate_tracking` (``edges``, ``tracks``,
    ``score_histograms``, ``timing`` of track building, settings) from stored edges and hits, plus the full
    ROC (``roc``: background and signal efficiency) of target against false edges."""

    opts = dict(options or {})
    cut = opts.get("score_cut")
    cut = float(cut if cut is not None else run.info.get("threshold", 0.5))
    method = str(opts.get("track_method") or "cc")
    pt_min = float(run.info.get("pt_min", 1.0))
    e_off, h_off = run.offsets_of("edges"), run.offsets_of("hits")
    n_events, n_hits = len(e_off) - 1, int(h_off[-1])
    edge_event = np.repeat(np.arange(n_events), np.diff(e_off))
    src = run.get("edge_src").astype(np.int64) + h_off[edge_event]
    dst = run.get("edge_dst").astype(np.int64) + h_off[edge_event]
    score = np.asarray(run.get("edge_score"), dtype=np.float32)
    y = np.asarray(run.get("edge_truth")).astype(bool)
    target = np.asarray(run.get("edge_target")).astype(bool)
    n_truth_target = int(np.sum(run.get("true_target_edges"))) if run.has("true_target_edges") else 0

    edge_metrics = edge_classification_metrics(cut)
    edge_metrics.update(
        scores=torch.from_numpy(score),
        edge_y=torch.from_numpy(y),
        edge_target=torch.from_numpy(target),
        truth_target=torch.ones(n_truth_target, dtype=torch.bool),
        n_events=n_events,
    )
    edges = {k: float(v) for k, v in edge_metrics.compute().items()}
    hist = {
        "target": np.histogram(score[target], HIST_BINS)[0],
        "other_true": np.histogram(score[y & ~target], HIST_BINS)[0],
        "false": np.histogram(score[~y], HIST_BINS)[0],
    }
    edges |= working_points(hist, HIST_BINS, tuple(opts.get("purities", (0.9, 0.95))))
    # The exact AUCs of the evaluation's definitions (0, as every tracking ratio, when a class is empty):
    # every true edge against false edges (headline), and target edges against false edges.
    auc = pm.roc_auc(score, y) if y.any() and (~y).any() else 0.0
    keep = target | ~y
    edges["auroc"] = float(auc)
    edges["auroc_target"] = float(
        pm.roc_auc(score[keep], target[keep]) if target.any() and (~y).any() else 0.0
    )
    fpr, tpr, _ = pm.roc_curve(score, y) if auc else (np.zeros(0), np.zeros(0), None)

    t0 = time.perf_counter()
    edge_index = torch.from_numpy(np.stack([src, dst])) if len(src) else torch.zeros(2, 0, dtype=torch.int64)
    tracks = _track_labels(edge_index, torch.from_numpy(score), n_hits, method, cut, opts).numpy()
    seconds = time.perf_counter() - t0
    hits = {k: np.asarray(run.get(k)) for k in ("hit_particle_id", "hit_tpx", "hit_tpy", "hit_tpz")}
    hit_pt, hit_eta = hit_pt_eta(hits)
    pos = np.stack([run.get(k) for k in HIT_POSITIONS], 1) if all(run.has(k) for k in HIT_POSITIONS) else None
    hit_event = np.repeat(np.arange(n_events), np.diff(h_off))
    selection = TargetSelection.from_options(opts, pt_min, int(run.info.get("min_hits", 3)))
    match = match_tracks(
        hit_event,
        hits["hit_particle_id"],
        tracks,
        hit_pt,
        hit_eta,
        pos,
        pt_min=pt_min,
        min_particle_hits=int(run.info.get("min_hits", 3)),
        min_track_hits=int(opts.get("min_track_hits", 3)),
        fraction=float(opts.get("matching_fraction", 0.5)),
        bfield=float(run.info.get("bfield", 2.0)),
        selection=selection,
    )
    if run.has("hit_weight"):
        weight = np.asarray(run.get("hit_weight"), float)
    else:
        distance = np.linalg.norm(pos, axis=1) if pos is not None else np.zeros(n_hits)
        weight = trackml_hit_weights(hit_event, hits["hit_particle_id"], hit_pt, distance)
    track_metrics = tracking_metrics(match, pt_min=pt_min)
    track_metrics["trackml_score"] = trackml_score(hit_event, hits["hit_particle_id"], tracks, weight)[
        "score"
    ]
    track_metrics["target_selection"] = asdict(selection)
    return {
        "n_events": n_events,
        "hits_per_event": n_hits / max(n_events, 1),
        "score_cut": cut,
        "track_building": method,
        "pt_min": pt_min,
        "edges": edges,
        "tracks": track_metrics,
        "timing": {"track_building": seconds / max(n_events, 1)},
        "score_histograms": {"edges": HIST_BINS.tolist(), **{k: v.tolist() for k, v in hist.items()}},
        "roc": {"background_efficiency": fpr, "signal_efficiency": tpr},
    }


@register("edge_classification")
class EdgeClassificationEvaluator(Evaluator):
    """Options: ``score_cut`` (default the task's threshold), ``track_method`` (``cc`` | ``walkthrough``),
    ``min_track_hits``, ``walk_min``, ``walk_add``, ``matching_fraction`` (ATLAS), ``purities``, and the
    target selection (:class:`~recoml.families.tracking.matching.TargetSelection`): ``pt_min``,
    ``min_particle_hits``, ``eta_max``, ``primary_only``, ``max_production_radius``, ``exclude_pdg``."""

    required = ("edge_src", "edge_dst", "edge_score")
    probabilities = ("edge_score",)
    main_metric = "edge_auc"
    higher_is_better = True

    def check(self, run: SectionData) -> None:
        run.offsets_of("edges")
        run.offsets_of("hits")
        super().check(run)
        missing = [f for f in TRUTH_FIELDS if not run.has(f)]
        if missing:
            raise DataError(
                f"{run.path}: edge predictions without truth (missing {missing}); the edge_classification "
                "evaluation needs the truth of the hits (predict on a store with hit_particle_id, "
                "hit_tpx/tpy/tpz)"
            )
        for name in ("edge_truth", "edge_target"):
            check_binary(run, name)

    def evaluate(self, run: SectionData) -> SectionResult:

        metrics = edge_tracking_metrics(run, self.options)
        res = SectionResult()
        res.scalars = {key: float(value) for key, _, _, value in metric_rows(metrics)}
        res.scalars |= {
            "score_cut": metrics["score_cut"],
            "hits_per_event": float(metrics["hits_per_event"]),
            "n_tracks": float(metrics["tracks"]["n_tracks"]),
            "n_target_particles": float(metrics["tracks"]["n_target_particles"]),
        }
        res.tables = {
            "track_building": metrics["track_building"],
            "pt_min": metrics["pt_min"],
            "tracks": metrics["tracks"],
            "score_histograms": metrics["score_histograms"],
        }
        res.curves = {"metrics": metrics}
        return res

    def highlights(self, run: SectionData, result: SectionResult) -> list[tuple[int, str]]:
        """The events whose edges are classified best and worst (fraction of edges on the right side of the
        score cut, truth: ``edge_truth``)."""
        offsets = run.offsets_of("edges")
        right = (np.asarray(run.get("edge_score")) > result.scalars["score_cut"]) == np.asarray(
            run.get("edge_truth"), dtype=bool
        )
        counts = np.diff(offsets)
        ok = np.flatnonzero(counts > 0)
        if not len(ok):
            return []
        fraction = np.add.reduceat(right.astype(float), offsets[:-1][ok]) / counts[ok]
        index = np.asarray(run.get("event_index"), dtype=np.int64)[ok]
        return [
            (int(index[i]), f"{what}: {100 * fraction[i]:.1f}% of {counts[ok][i]} edges classified right")
            for what, i in (("best", int(np.argmax(fraction))), ("worst", int(np.argmin(fraction))))
        ]

    def plot(
        self, runs: Sequence[SectionData], results: Sequence[SectionResult], sink: PlotSink, section: str
    ) -> None:

        series = [
            Series(
                f"{r.label} (AUC {res.scalars['edge_auc']:.3f})",
                np.asarray(res.curves["metrics"]["roc"]["background_efficiency"]),
                np.asarray(res.curves["metrics"]["roc"]["signal_efficiency"]),
                color=i,
            )
            for i, (r, res) in enumerate(zip(runs, results))
        ]
        sink.save(
            plot_roc(series, f"{section}: edges"),
            section,
            "roc",
            "ROC of edges (target edges against false edges)",
        )
        figures = tracking_figures([(r.label, res.curves["metrics"]) for r, res in zip(runs, results)])
        method = results[0].tables["track_building"]
        for name, fig, title in figures:
            caption = "" if name == "edge_scores" else f"tracks by {method} at the score cut"
            sink.save(fig, section, name, title, caption)
