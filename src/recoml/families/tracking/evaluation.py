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
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from recoml.errors import ConfigError, DataError
from recoml.evaluation.checks import check_binary
from recoml.evaluation.registry import Evaluator, PlotSink, SectionResult, register
from recoml.families.tracking.building import build_tracks_cc, build_tracks_walkthrough
from recoml.families.tracking.matching import TargetSelection, TrackMatch, match_tracks, tracking_metrics
from recoml.families.tracking.metrics import edge_classification_metrics
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


def tracking_evaluation(
    edges: Mapping[str, np.ndarray],
    hits: Mapping[str, np.ndarray],
    hit_event: np.ndarray,
    n_events: int,
    n_truth_target: int,
    options: Mapping[str, Any] | None = None,
    *,
    score_cut: float,
    pt_min: float,
    min_hits: int,
    bfield: float,
    tracks: np.ndarray | None = None,
) -> tuple[dict[str, Any], TrackMatch]:
    """Edge and track metrics of scored edges: the one implementation behind ``recoml.evaluate``
    (:func:`edge_tracking_metrics`) and :func:`~recoml.families.tracking.pipeline.evaluate_tracking`.

    ``edges``: ``src``, ``dst`` (indices into the hits), ``score``, ``truth`` (true edge of any particle),
    ``target`` (true edge of a target particle); ``hits``: ``hit_particle_id``, ``hit_tpx/tpy/tpz`` and,
    when present, ``hit_x/y/z`` (track-parameter estimates, TrackML hit order) and ``hit_weight``;
    ``n_truth_target`` the target edges of the truth graph (graph efficiency). ``tracks`` (a label per
    hit) when already built, else built here at the score cut with ``options`` (``track_method``,
    ``min_track_hits``, ``walk_min``, ``walk_add``) and timed. Returns ``(metrics, matched tracks)``:
    ``edges``, ``tracks``, ``score_histograms``, ``roc``, ``timing`` and the settings used.
    """
    opts = dict(options or {})
    method = str(opts.get("track_method") or "cc")
    n_hits = len(hit_event)
    src, dst = np.asarray(edges["src"], np.int64), np.asarray(edges["dst"], np.int64)
    score = np.asarray(edges["score"], dtype=np.float32)
    y = np.asarray(edges["truth"]).astype(bool)
    target = np.asarray(edges["target"]).astype(bool)

    edge_metrics = edge_classification_metrics(score_cut)
    edge_metrics.update(
        scores=torch.from_numpy(score),
        edge_y=torch.from_numpy(y),
        edge_target=torch.from_numpy(target),
        truth_target=torch.ones(n_truth_target, dtype=torch.bool),
        n_events=n_events,
    )
    edge_values = {k: float(v) for k, v in edge_metrics.compute().items()}
    hist = {
        "target": np.histogram(score[target], HIST_BINS)[0],
        "other_true": np.histogram(score[y & ~target], HIST_BINS)[0],
        "false": np.histogram(score[~y], HIST_BINS)[0],
    }
    edge_values |= working_points(hist, HIST_BINS, tuple(opts.get("purities", (0.9, 0.95))))
    # The exact AUCs of the evaluation's definitions (0, as every tracking ratio, when a class is empty):
    # every true edge against false edges (headline), and target edges against false edges.
    auc = pm.roc_auc(score, y) if y.any() and (~y).any() else 0.0
    keep = target | ~y
    edge_values["auroc"] = float(auc)
    edge_values["auroc_target"] = float(
        pm.roc_auc(score[keep], target[keep]) if target.any() and (~y).any() else 0.0
    )
    fpr, tpr, _ = pm.roc_curve(score, y) if auc else (np.zeros(0), np.zeros(0), None)

    timing: dict[str, float] = {}
    if tracks is None:
        t0 = time.perf_counter()
        edge_index = torch.from_numpy(np.stack([src, dst]).reshape(2, -1))
        tracks = _track_labels(edge_index, torch.from_numpy(score), n_hits, method, score_cut, opts).numpy()
        timing["track_building"] = (time.perf_counter() - t0) / max(n_events, 1)
    pid = np.asarray(hits["hit_particle_id"])
    hit_pt, hit_eta = hit_pt_eta(hits)
    pos = np.stack([hits[k] for k in HIT_POSITIONS], 1) if all(k in hits for k in HIT_POSITIONS) else None
    selection = TargetSelection.from_options(opts, pt_min, min_hits)
    match = match_tracks(
        hit_event,
        pid,
        tracks,
        hit_pt,
        hit_eta,
        pos,
        pt_min=pt_min,
        min_particle_hits=min_hits,
        min_track_hits=int(opts.get("min_track_hits", 3)),
        fraction=float(opts.get("matching_fraction", 0.5)),
        bfield=bfield,
        selection=selection,
    )
    if "hit_weight" in hits:
        weight = np.asarray(hits["hit_weight"], float)
    else:
        distance = np.linalg.norm(pos, axis=1) if pos is not None else np.zeros(n_hits)
        weight = trackml_hit_weights(hit_event, pid, hit_pt, distance)
    track_metrics = tracking_metrics(match, pt_min=pt_min)
    track_metrics["trackml_score"] = trackml_score(hit_event, pid, tracks, weight)["score"]
    track_metrics["target_selection"] = asdict(selection)
    metrics = {
        "n_events": n_events,
        "hits_per_event": n_hits / max(n_events, 1),
        "score_cut": score_cut,
        "track_building": method,
        "pt_min": pt_min,
        "edges": edge_values,
        "tracks": track_metrics,
        "timing": timing,
        "score_histograms": {"edges": HIST_BINS.tolist(), **{k: v.tolist() for k, v in hist.items()}},
        "roc": {"background_efficiency": fpr, "signal_efficiency": tpr},
    }
    return metrics, match


def edge_tracking_metrics(run: SectionData, options: dict[str, Any] | None = None) -> dict[str, Any]:
    """:func:`tracking_evaluation` of an edge predictions file: the stored edges and hits, the score cut
    ``options.score_cut`` (default the task's threshold), tracks built from the stored edges."""

    opts = dict(options or {})
    cut = opts.get("score_cut")
    cut = float(cut if cut is not None else run.info.get("threshold", 0.5))
    e_off, h_off = run.offsets_of("edges"), run.offsets_of("hits")
    n_events = len(e_off) - 1
    edge_event = np.repeat(np.arange(n_events), np.diff(e_off))
    edges = {
        "src": run.get("edge_src").astype(np.int64) + h_off[edge_event],
        "dst": run.get("edge_dst").astype(np.int64) + h_off[edge_event],
        "score": run.get("edge_score"),
        "truth": run.get("edge_truth"),
        "target": run.get("edge_target"),
    }
    names = ("hit_particle_id", "hit_tpx", "hit_tpy", "hit_tpz", *HIT_POSITIONS, "hit_weight")
    hits = {k: np.asarray(run.get(k)) for k in names if run.has(k)}
    n_truth_target = int(np.sum(run.get("true_target_edges"))) if run.has("true_target_edges") else 0
    metrics, _ = tracking_evaluation(
        edges,
        hits,
        np.repeat(np.arange(n_events), np.diff(h_off)),
        n_events,
        n_truth_target,
        opts,
        score_cut=cut,
        pt_min=float(run.info.get("pt_min", 1.0)),
        min_hits=int(run.info.get("min_hits", 3)),
        bfield=float(run.info.get("bfield", 2.0)),
    )
    return metrics


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
