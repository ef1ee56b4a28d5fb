"""Tracking evaluation report: ``tracking_metrics.json``, plots (PNG + PDF) and ``tracking_report.md``.

Plots: track efficiency vs pT and vs eta (double majority and ATLAS matching overlaid), fake rate and
duplicate rate vs eta, and the edge-score distributions of target and false edges. Every file is written
under a temporary name and renamed; an existing report directory is refused unless ``overwrite``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from recoml.errors import DataError
from recoml.tracking.matching import MATCHING_STYLES

__all__ = ["evaluate_checkpoint", "write_tracking_report"]

log = logging.getLogger(__name__)

_LABELS = {"double_majority": "double majority", "atlas": "ATLAS (purity)"}
METRICS_FILE = "tracking_metrics.json"


def _series(binned: dict[str, list[float]], label: str, color: int):
    from recoml.plotting import Series

    edges = np.asarray(binned["edges"])
    centres = 0.5 * (edges[1:] + edges[:-1])
    n = np.asarray(binned["n"])
    ok = n > 0
    return Series(label, centres[ok], np.asarray(binned["value"])[ok], np.asarray(binned["error"])[ok], color)


def _plots(metrics: dict[str, Any], directory: Path) -> list[str]:
    from recoml.plotting import apply_style, figure, plot_lines, save_figure

    apply_style(None)
    tracks = metrics["tracks"]
    pt_min = metrics.get("pt_min", 1.0)
    written: list[str] = []
    specs = [
        ("efficiency_vs_pt", "true pT [GeV]", "track efficiency", {"logy": False, "ylim": (0, 1.05)}),
        ("efficiency_vs_eta", f"true eta (pT > {pt_min} GeV)", "track efficiency", {"ylim": (0, 1.05)}),
        ("fake_rate_vs_eta", "track eta", "fake rate", {}),
        ("duplicate_rate_vs_eta", "true eta", "duplicate rate", {}),
    ]
    for key, xlabel, ylabel, kw in specs:
        series = [_series(tracks[s][key], _LABELS[s], i) for i, s in enumerate(MATCHING_STYLES)]
        fig = plot_lines(series, xlabel, ylabel, **kw)
        if key == "efficiency_vs_pt":
            fig.axes[0].set_xscale("log")
        save_figure(fig, directory, key)
        written.append(key)
    h = metrics.get("score_histograms")
    if h:
        fig, (ax,) = figure()
        edges = np.asarray(h["edges"])
        for i, (key, label) in enumerate((("target", "target edges"), ("false", "false edges"))):
            counts = np.asarray(h[key], dtype=float)
            if counts.sum() > 0:
                ax.stairs(counts / counts.sum(), edges, color=f"C{i}", label=label)
        ax.axvline(metrics["score_cut"], color="0.5", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_xlabel("edge score")
        ax.set_ylabel("fraction of edges")
        ax.legend()
        save_figure(fig, directory, "edge_scores")
        written.append("edge_scores")
    return written


def _markdown(metrics: dict[str, Any], plots: list[str]) -> str:
    e, t = metrics["edges"], metrics["tracks"]
    lines = [
        "# Tracking evaluation",
        "",
        f"{metrics['n_events']} events, {metrics['hits_per_event']:.0f} hits per event; target particles: "
        f"pT > {metrics['pt_min']} GeV with >= 3 hits; score cut {metrics['score_cut']}, track building "
        f"'{metrics['track_building']}'.",
        "",
        "| stage | metric | value |",
        "|---|---|---|",
        f"| graph construction | edge efficiency | {e['graph_efficiency']:.4f} |",
        f"| graph construction | edge purity | {e['graph_purity']:.4f} |",
        f"| graph construction | edges per event | {e['edges_per_event']:.0f} |",
        f"| edge classification | efficiency | {e['efficiency']:.4f} |",
        f"| edge classification | purity | {e['purity']:.4f} |",
        f"| edge classification | target purity | {e['target_purity']:.4f} |",
        f"| edge classification | AUC | {e['auroc']:.4f} |",
    ]
    for key in sorted(k for k in e if k.startswith("efficiency_at_purity_")):
        p = key.rsplit("_", 1)[-1]
        cut = e["cut_at_purity_" + p]
        lines.append(
            f"| edge classification | efficiency at purity 0.{p[1:]} (cut {cut:.3f}) | {e[key]:.4f} |"
        )
    for style in MATCHING_STYLES:
        for k in ("efficiency", "fake_rate", "duplicate_rate"):
            lines.append(f"| tracks ({_LABELS[style]}) | {k.replace('_', ' ')} | {t[style][k]:.4f} |")
    lines += ["", "| stage | seconds per event |", "|---|---|"]
    lines += [f"| {k.replace('_', ' ')} | {v:.3f} |" for k, v in metrics["timing"].items()]
    lines += ["", *[f"![{p}]({p}.png)" for p in plots], ""]
    return "\n".join(lines)


def write_tracking_report(
    metrics: dict[str, Any], directory: str | os.PathLike, overwrite: bool = False, plots: bool = True
) -> Path:
    """Write ``metrics`` (from :func:`~recoml.tracking.pipeline.evaluate_tracking`) into ``directory``."""
    from recoml.utils.provenance import write_json

    directory = Path(directory)
    if (directory / METRICS_FILE).exists() and not overwrite:
        raise DataError(f"{directory / METRICS_FILE} already exists; set overwrite=true to replace it")
    directory.mkdir(parents=True, exist_ok=True)
    written = _plots(metrics, directory) if plots else []
    write_json(directory / METRICS_FILE, metrics)
    tmp = directory / ".tracking_report.md.tmp"
    tmp.write_text(_markdown(metrics, written))
    tmp.replace(directory / "tracking_report.md")
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
    **pipeline_options: Any,
) -> dict[str, Any]:
    """Edge-classifier checkpoint + event store -> tracks, metrics and the report in ``directory``.

    ``pipeline_options`` go to :class:`~recoml.tracking.pipeline.TrackingPipeline` (``walk_min``,
    ``walk_add``, ``min_hits``, ``cc_backend``).
    """
    from recoml.tracking.pipeline import TrackingPipeline, evaluate_tracking, iterate_store

    options: dict[str, Any] = {"method": method, **pipeline_options}
    if score_cut is not None:
        options["score_cut"] = score_cut
    pipeline = TrackingPipeline.from_checkpoint(ckpt_path, map_location=device, **options)
    # Splits as the run made them when this is its own store (same fractions, seed and split file).
    trained_on = pipeline.config.get("dataset") or {}
    same_store = Path(str(trained_on.get("path", ""))).resolve() == Path(data).resolve()
    split_options = (
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
