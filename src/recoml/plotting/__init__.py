"""ROC, confusion, resolution and efficiency plots (matplotlib Agg; optional mplhep experiment styles)."""

from recoml.plotting.curves import (
    Series,
    edges_for,
    plot_2d,
    plot_confusion,
    plot_histograms,
    plot_lines,
    plot_panels,
    plot_roc,
    plot_species,
)
from recoml.plotting.style import FORMATS, apply_style, current_style, figure, finish, save_figure

__all__ = [
    "FORMATS",
    "Series",
    "apply_style",
    "current_style",
    "edges_for",
    "figure",
    "finish",
    "plot_2d",
    "plot_confusion",
    "plot_histograms",
    "plot_lines",
    "plot_panels",
    "plot_roc",
    "plot_species",
    "save_figure",
]
