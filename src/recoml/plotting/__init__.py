"""ROC, confusion, resolution and efficiency plots (matplotlib Agg; optional mplhep experiment styles)."""

from recoml.plotting.curves import (
    Series,
    edges_for,
    plot_confusion,
    plot_histograms,
    plot_lines,
    plot_panels,
    plot_roc,
)
from recoml.plotting.style import FORMATS, apply_style, figure, save_figure

__all__ = [
    "FORMATS",
    "Series",
    "apply_style",
    "edges_for",
    "figure",
    "plot_confusion",
    "plot_histograms",
    "plot_lines",
    "plot_panels",
    "plot_roc",
    "save_figure",
]
