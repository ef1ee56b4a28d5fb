"""Tracking figures and headline rows of the ``edge_classification`` evaluator of ``recoml.evaluate``
(:mod:`recoml.families.tracking.evaluation`), and :func:`evaluate_checkpoint`: checkpoint -> predict ->
evaluate in one call (the one evaluation road).

Plots: track efficiency vs pT and vs eta (double majority and ATLAS matching overlaid), fake rate and
duplicate rate vs eta, and the edge-score distributions of target and false edges.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recoml.evaluation import evaluate
from recoml.families.tracking.matching import MATCHING_STYLES
from recoml.plotting import Series, figure, plot_lines
from recoml.prediction import predict
from recoml.utils.cli import compose_entry

__all__ = ["evaluate_checkpoint", "metric_rows", "tracking_figures"]

log = logging.getLogger(__name__)

_LABELS = {"double_majority": "double majority", "atlas": "ATLAS (purity)"}


#: Binned track metrics plotted: (key, x label (``{pt_min}`` filled in), y label, options of plot_lines).
TRACK_PLOTS: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("efficiency_vs_pt", "true pT [GeV]", "track efficiency", {"ylim": (0, 1.05)}),
    ("efficiency_vs_eta", "true eta (pT > {pt_min} GeV)", "track efficiency", {"ylim": (0, 1.05)}),
    ("fake_rate_vs_eta", "track eta", "fake rate", {}),
    ("duplicate_rate_vs_eta", "true eta", "duplicate rate", {}),
)
_TITLES = {
    "efficiency_vs_pt": "Track efficiency vs true pT",
    "efficiency_vs_eta": "Track efficiency vs true eta",
    "fake_rate_vs_eta": "Fake rate vs track eta",
    "duplicate_rate_vs_eta": "Duplicate rate vs true eta",
    "edge_scores": "Edge scores of target and false edges",
}


def _series(binned: dict[str, list[float]], label: str, color: int, linestyle: str = "-"):
    """A binned rate as a plotted series: points at bin centres, bin-width bars, Wilson 68.3% intervals."""

    return Series.binned(
        label,
        np.asarray(binned["edges"], dtype=float),
        np.asarray(binned["value"], dtype=float),
        np.asarray(binned["low"], dtype=float),
        np.asarray(binned["high"], dtype=float),
        color,
        linestyle,
    )


def tracking_figures(runs: Sequence[tuple[str, dict[str, Any]]]) -> list[tuple[str, Any, str]]:
    """``(name, figure, title)`` of every tracking plot, all ``runs`` (``(label, metrics)``, metrics as
    :func:`~recoml.families.tracking.pipeline.evaluate_tracking` returns them) overlaid: one run draws
    the two matching definitions in two colours; several runs keep a colour each, double majority solid
    and ATLAS dashed."""

    single = len(runs) == 1
    pt_min = runs[0][1].get("pt_min", 1.0)
    out: list[tuple[str, Any, str]] = []
    for key, xlabel, ylabel, kw in TRACK_PLOTS:
        series = []
        for r, (label, metrics) in enumerate(runs):
            for i, style in enumerate(MATCHING_STYLES):
                name = _LABELS[style] if single else f"{label}: {_LABELS[style]}"
                color, line = (i, "-") if single else (r, ("-", "--")[i])
                series.append(_series(metrics["tracks"][style][key], name, color, line))
        fig = plot_lines(series, xlabel.format(pt_min=pt_min), ylabel, **kw)
        if key == "efficiency_vs_pt":  # linear through the turn-on from 0, logarithmic above 1 GeV
            fig.axes[0].set_xscale("symlog", linthresh=1.0, linscale=1.0)
            fig.axes[0].set_xlim(0.0, None)
        out.append((key, fig, _TITLES[key]))
    with_hist = [(label, m) for label, m in runs if m.get("score_histograms")]
    if with_hist:
        fig, (ax,) = figure()
        for r, (label, metrics) in enumerate(with_hist):
            h = metrics["score_histograms"]
            edges = np.asarray(h["edges"])
            for i, (key, what) in enumerate((("target", "target edges"), ("false", "false edges"))):
                counts = np.asarray(h[key], dtype=float)
                if counts.sum() > 0:
                    color, line = (i, "-") if single else (r, ("-", "--")[i])
                    name = what if single else f"{label}: {what}"
                    ax.stairs(counts / counts.sum(), edges, color=f"C{color}", linestyle=line, label=name)
        ax.axvline(with_hist[0][1]["score_cut"], color="0.5", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_xlabel("edge score")
        ax.set_ylabel("fraction of edges")
        ax.legend()
        out.append(("edge_scores", fig, _TITLES["edge_scores"]))
    return out


def metric_rows(metrics: dict[str, Any]) -> list[tuple[str, str, str, float]]:
    """``(key, stage, metric, value)`` of the headline numbers: graph construction, edge classification at
    the cut and at fixed purities, tracks per matching definition. ``key`` is a flat metric name
    (``edge_efficiency``, ``track_efficiency_double_majority`` ...)."""
    e, t = metrics["edges"], metrics["tracks"]
    rows = [
        ("graph_efficiency", "graph construction", "edge efficiency", e["graph_efficiency"]),
        ("graph_purity", "graph construction", "edge purity", e["graph_purity"]),
        ("edges_per_event", "graph construction", "edges per event", e["edges_per_event"]),
        ("edge_efficiency", "edge classification", "efficiency", e["efficiency"]),
        ("edge_purity", "edge classification", "purity", e["purity"]),
        ("edge_target_purity", "edge classification", "target purity", e["target_purity"]),
        ("edge_auc", "edge classification", "AUC (all true edges)", e["auroc"]),
        ("edge_auc_target", "edge classification", "AUC (target edges)", e.get("auroc_target", 0.0)),
    ]
    for key in sorted(k for k in e if k.startswith("efficiency_at_purity_")):
        p = key.rsplit("_", 1)[-1]
        cut = e["cut_at_purity_" + p]
        rows.append(
            (f"edge_{key}", "edge classification", f"efficiency at purity 0.{p[1:]} (cut {cut:.3f})", e[key])
        )
    for style in MATCHING_STYLES:
        for k in ("efficiency", "fake_rate", "duplicate_rate", "fake_rate_reco_pt_above_min"):
            name = k.replace("_", " ").replace("reco pt above min", "(track pT > pt_min)")
            rows.append((f"track_{k}_{style}", f"tracks ({_LABELS[style]})", name, t[style][k]))
    if "trackml_score" in t:
        rows.append(("trackml_score", "tracks", "TrackML score", t["trackml_score"]))
    return rows


def evaluate_checkpoint(
    ckpt_path: str | os.PathLike,
    data: str | os.PathLike,
    directory: str | os.PathLike,
    split: str = "test",
    method: str = "cc",
    score_cut: float | None = None,
    overwrite: bool = False,
    device: str = "cpu",
    trust: Sequence[str] = (),
    **options: Any,
) -> dict[str, Any]:
    """Edge-classifier checkpoint + event store -> ``directory/predictions.h5`` (``recoml.predict``) -> the
    ``recoml.evaluate`` report in ``directory/evaluation``: the entry points' one road, as one call.

    Returns the tracking metrics (``edges``, ``tracks``, ``n_events``, ``hits_per_event`` ...). The
    checkpoint is read by the safe loader; ``trust`` lists the extra ``_target_``s the user allows, as
    ``trust=`` does for ``recoml.predict``. ``options`` are the evaluation's (``walk_min``, ``walk_add``,
    ``min_track_hits``, ``matching_fraction``, ``purities``).
    """
    directory = Path(directory)
    flag = f"overwrite={str(bool(overwrite)).lower()}"
    predict_overrides = [
        f"ckpt_path={Path(ckpt_path).resolve()}",
        f"split={split}",
        "dataset=from_file",
        f"dataset.path={Path(data).resolve()}",
        "dataset.num_workers=0",
        "dataset.pin_memory=false",
        "batch_size=1",
        f"trust=[{','.join(trust)}]",
        flag,
    ]
    if device != "cpu":
        predict_overrides.append("trainer=gpu")
    predictions = predict(compose_entry("predict", directory, predict_overrides))
    settings = {"track_method": method, **options} | ({} if score_cut is None else {"score_cut": score_cut})
    evaluation = evaluate(
        compose_entry(
            "evaluate",
            directory / "evaluation",
            [f"predictions={predictions}", flag, *(f"options.{k}={v}" for k, v in settings.items())],
        )
    )
    section = next(iter(evaluation.sections.values()))
    metrics: dict[str, Any] = next(iter(section["results"].values())).curves["metrics"]
    return metrics | {"checkpoint": str(ckpt_path), "data": str(data), "split": split}
