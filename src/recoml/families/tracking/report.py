"""Tracking evaluation report: ``tracking_metrics.json``, plots (PNG + PDF) and ``tracking_report.md``.

Plots: track efficiency vs pT and vs eta (double majority and ATLAS matching overlaid), fake rate and
duplicate rate vs eta, and the edge-score distributions of target and false edges. Every file is written
under a temporary name and renamed; an existing report directory is refused unless ``overwrite``.

:func:`tracking_figures` and :func:`metric_rows` are shared with the ``edge_classification`` evaluator of
``recoml.evaluate`` (:mod:`recoml.families.tracking.evaluation`), which overlays several runs with them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from recoml.errors import DataError
from recoml.families.tracking.matching import MATCHING_STYLES
from recoml.families.tracking.pipeline import TrackingPipeline, evaluate_tracking, iterate_store
from recoml.io.atomic import write_text
from recoml.io.provenance import write_json
from recoml.plotting import Series, apply_style, figure, plot_lines, save_figure

__all__ = ["evaluate_checkpoint", "metric_rows", "tracking_figures", "write_tracking_report"]

log = logging.getLogger(__name__)

_LABELS = {"double_majority": "double majority", "atlas": "ATLAS (purity)"}
METRICS_FILE = "tracking_metrics.json"


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


def _plots(metrics: dict[str, Any], directory: Path) -> list[str]:

    apply_style(None)
    written: list[str] = []
    for name, fig, _ in tracking_figures([("", metrics)]):
        save_figure(fig, directory, name)
        written.append(name)
    return written


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
        ("edge_auc", "edge classification", "AUC", e["auroc"]),
    ]
    for key in sorted(k for k in e if k.startswith("efficiency_at_purity_")):
        p = key.rsplit("_", 1)[-1]
        cut = e["cut_at_purity_" + p]
        rows.append(
            (f"edge_{key}", "edge classification", f"efficiency at purity 0.{p[1:]} (cut {cut:.3f})", e[key])
        )
    for style in MATCHING_STYLES:
        for k in ("efficiency", "fake_rate", "duplicate_rate"):
            rows.append(
                (f"track_{k}_{style}", f"tracks ({_LABELS[style]})", k.replace("_", " "), t[style][k])
            )
    return rows


def _markdown(metrics: dict[str, Any], plots: list[str]) -> str:
    lines = [
        "# Tracking evaluation",
        "",
        f"{metrics['n_events']} events, {metrics['hits_per_event']:.0f} hits per event; target particles: "
        f"pT > {metrics['pt_min']} GeV with >= 3 hits; score cut {metrics['score_cut']}, track building "
        f"'{metrics['track_building']}'.",
        "",
        "| stage | metric | value |",
        "|---|---|---|",
    ]
    for key, stage, name, value in metric_rows(metrics):
        lines.append(
            f"| {stage} | {name} | {value:.0f} |"
            if key == "edges_per_event"
            else f"| {stage} | {name} | {value:.4f} |"
        )
    lines += ["", "| stage | seconds per event |", "|---|---|"]
    lines += [f"| {k.replace('_', ' ')} | {v:.3f} |" for k, v in metrics["timing"].items()]
    lines += ["", *[f"![{p}]({p}.png)" for p in plots], ""]
    return "\n".join(lines)


def write_tracking_report(
    metrics: dict[str, Any], directory: str | os.PathLike, overwrite: bool = False, plots: bool = True
) -> Path:
    """Write ``metrics`` (from :func:`~recoml.families.tracking.pipeline.evaluate_tracking`) into
    ``directory``."""

    directory = Path(directory)
    if (directory / METRICS_FILE).exists() and not overwrite:
        raise DataError(f"{directory / METRICS_FILE} already exists; set overwrite=true to replace it")
    directory.mkdir(parents=True, exist_ok=True)
    written = _plots(metrics, directory) if plots else []
    write_json(directory / METRICS_FILE, metrics)
    write_text(directory / "tracking_report.md", _markdown(metrics, written))
    log.info("tracking report: %s", directory)
    return directory / METRICS_FILE


def evaluate_checkpoint(
    ckpt_path: str | os.PathLike,
    data: str | os.PathLike,
    directory: str | os.PathLike,
    split: str = "test",
    batch_size: int = 1,
    max_events: int | None = None,
    method: str = "cc",
    score_cut: float | None = None,
    overwrite: bool = False,
    device: str = "cpu",
    trust: Sequence[str] = (),
    **pipeline_options: Any,
) -> dict[str, Any]:
    """Edge-classifier checkpoint + event store -> tracks, metrics and the report in ``directory``.

    The checkpoint is read by the safe loader (nothing in it runs); ``trust`` lists the extra ``_target_``s
    the user allows, as ``trust=`` does for ``recoml.predict``. ``pipeline_options`` go to
    :class:`~recoml.families.tracking.pipeline.TrackingPipeline` (``walk_min``, ``walk_add``, ``min_hits``,
    ``cc_backend``).
    """

    options: dict[str, Any] = {"method": method, **pipeline_options}
    if score_cut is not None:
        options["score_cut"] = score_cut
    pipeline = TrackingPipeline.from_checkpoint(ckpt_path, map_location=device, trust=trust, **options)
    # Splits as the run made them when this is its own store (same fractions, seed and split file).
    trained_on = pipeline.config.get("dataset") or {}
    same_store = Path(str(trained_on.get("path", ""))).resolve() == Path(data).resolve()
    split_options: dict[str, Any] = (
        {
            "split_path": trained_on.get("split_path"),
            "fractions": tuple(trained_on.get("fractions", (0.8, 0.1, 0.1))),
            "seed": int(trained_on.get("split_seed", 0)),
        }
        if same_store
        else {}
    )
    batches = iterate_store(data, split=split, batch_size=batch_size, max_events=max_events, **split_options)
    metrics, _ = evaluate_tracking(pipeline, batches)
    metrics["checkpoint"] = str(ckpt_path)
    metrics["data"] = str(data)
    metrics["split"] = split
    write_tracking_report(metrics, directory, overwrite=overwrite)
    return metrics
