"""Generic overlay plots: every function takes one entry per run, so a comparison of a CNN and a GNN (or
two detector configurations) puts all of them on the same axes, each run keeping its colour (``C<i>``)
in every figure. The functions know nothing about predictions files; evaluators feed them numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from recoml.plotting.style import figure


@dataclass
class Series:
    """One run's curve: ``y(x)`` with optional error bars (``(n,)`` symmetric or ``(2, n)`` low/high),
    drawn in colour ``C<color>``. Binned quantities carry ``xerr`` (the bin's extent) and are drawn as
    points with bars, not joined by lines."""

    label: str
    x: np.ndarray
    y: np.ndarray
    yerr: np.ndarray | None = None
    color: int = 0
    linestyle: str = "-"
    xerr: np.ndarray | None = None

    @classmethod
    def binned(
        cls,
        label: str,
        edges: ArrayLike,
        value: ArrayLike,
        low: ArrayLike,
        high: ArrayLike,
        color: int = 0,
        linestyle: str = "-",
    ) -> Series:
        """Per-bin ``value`` with its interval ``[low, high]``: a point at each bin centre, a horizontal bar
        over the bin's width; empty bins (NaN) are left out."""
        edges = np.asarray(edges, dtype=float)
        value, low, high = (np.asarray(a, dtype=float) for a in (value, low, high))
        centres = 0.5 * (edges[1:] + edges[:-1])
        ok = np.isfinite(value)
        yerr = np.maximum(np.stack([value - low, high - value]), 0.0)[:, ok]  # rounding never negative
        xerr = np.stack([centres - edges[:-1], edges[1:] - centres])[:, ok]
        return cls(label, centres[ok], value[ok], yerr, color, linestyle, xerr)


_MARKERS = ("o", "s", "^", "v", "D", "P", "X")


def _draw(ax, s: Series, markers: bool) -> None:
    kw = {"color": f"C{s.color}", "label": s.label}
    if s.xerr is not None:  # binned: markers with bin-width bars, never joined by lines
        marker = _MARKERS[s.color % len(_MARKERS)] if s.linestyle == "-" else "o"
        face = f"C{s.color}" if s.linestyle == "-" else "none"
        ax.errorbar(
            s.x,
            s.y,
            yerr=s.yerr,
            xerr=s.xerr,
            linestyle="none",
            marker=marker,
            markersize=4,
            markerfacecolor=face,
            elinewidth=1.0,
            capsize=0,
            **kw,
        )
    elif s.yerr is not None:
        ax.errorbar(
            s.x,
            s.y,
            yerr=s.yerr,
            marker="o" if markers else None,
            markersize=3,
            capsize=2,
            linestyle=s.linestyle,
            **kw,
        )
    else:
        ax.plot(s.x, s.y, marker="o" if markers else None, markersize=3, linestyle=s.linestyle, **kw)


def draw_lines(
    ax,
    series: Sequence[Series],
    xlabel: str,
    ylabel: str,
    title: str = "",
    logy: bool = False,
    ylim: tuple[float, float] | None = None,
    hline: float | None = None,
    markers: bool = True,
) -> None:
    """Binned quantities (resolution, bias, efficiency) of several runs on one axes."""
    for s in series:
        _draw(ax, s, markers)
    if hline is not None:
        ax.axhline(hline, color="0.5", linewidth=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if ylim is not None:
        ax.set_ylim(*ylim)
    if title:
        ax.set_title(title)
    if series:
        ax.legend()


def plot_lines(series: Sequence[Series], xlabel: str, ylabel: str, **kwargs):
    """A figure with one axes of :func:`draw_lines`."""
    fig, (ax,) = figure()
    draw_lines(ax, series, xlabel, ylabel, **kwargs)
    return fig


def plot_panels(panels: Sequence[dict], title: str = ""):
    """Side-by-side axes, each the keyword arguments of :func:`draw_lines` (``series``, ``xlabel``, ...)."""
    fig, axes = figure(ncols=len(panels))
    for ax, panel in zip(axes, panels):
        draw_lines(ax, **panel)
    if title:
        fig.suptitle(title)
    return fig


def plot_roc(series: Sequence[Series], title: str = ""):
    """Left: ROC (signal efficiency vs background efficiency, ``x``/``y`` of each series). Right:
    background rejection ``1 / eps_bkg`` vs signal efficiency on a log scale (the HEP convention)."""
    fig, (left, right) = figure(ncols=2)
    for s in series:
        left.plot(s.x, s.y, color=f"C{s.color}", label=s.label)
        ok = (s.x > 0) & np.isfinite(s.x)
        right.plot(s.y[ok], 1.0 / s.x[ok], color=f"C{s.color}", label=s.label)
    left.plot([0, 1], [0, 1], color="0.6", linestyle=":", linewidth=0.8)
    left.set_xlabel("background efficiency")
    left.set_ylabel("signal efficiency")
    left.set_xlim(0, 1)
    left.set_ylim(0, 1.02)
    right.set_xlabel("signal efficiency")
    right.set_ylabel("background rejection (1 / efficiency)")
    right.set_yscale("log")
    right.set_xlim(0, 1)
    for ax in (left, right):
        ax.legend()
    if title:
        fig.suptitle(title)
    return fig


def plot_histograms(
    samples: Sequence[tuple],
    bins: np.ndarray | int,
    xlabel: str,
    title: str = "",
    density: bool = True,
    logy: bool = False,
    vline: float | None = None,
):
    """Step histograms of ``(label, values, colour[, linestyle])`` per run, unit area by default."""
    fig, (ax,) = figure()
    for label, values, color, *rest in samples:
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        values = values[np.isfinite(values)]
        if len(values) == 0:
            continue
        style = rest[0] if rest else "-"
        ax.hist(
            values,
            bins=bins,
            histtype="step",
            density=density,
            color=f"C{color}",
            linestyle=style,
            label=label,
        )
    if vline is not None:
        ax.axvline(vline, color="0.5", linewidth=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density" if density else "events")
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    ax.legend()
    return fig


def plot_confusion(matrices: Sequence[tuple[str, np.ndarray]], class_names: Sequence[str], title: str = ""):
    """Row-normalized confusion matrices, one panel per run (true class on y, predicted on x)."""
    fig, axes = figure(ncols=len(matrices), width=5.0, height=4.2)
    n = len(class_names)
    for ax, (label, m) in zip(axes, matrices):
        ax.grid(False)
        ax.imshow(m, vmin=0, vmax=1, cmap="Blues")
        for i in range(n):
            for j in range(n):
                ax.text(
                    j, i, f"{m[i, j]:.2f}", ha="center", va="center", color="white" if m[i, j] > 0.5 else "k"
                )
        ax.set_xticks(range(n), class_names)
        ax.set_yticks(range(n), class_names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(label)
    if title:
        fig.suptitle(title)
    return fig


def edges_for(
    values: Sequence[np.ndarray], n_bins: int, quantiles: tuple[float, float] = (0.0, 1.0)
) -> np.ndarray:
    """Common bin edges (equal width) spanning the given quantiles of all runs' values, so compared runs
    share bins."""
    allv = np.concatenate([np.asarray(v, dtype=np.float64).reshape(-1) for v in values])
    allv = allv[np.isfinite(allv)]
    if len(allv) == 0:
        return np.linspace(0.0, 1.0, n_bins + 1)
    lo, hi = np.quantile(allv, quantiles)
    if hi <= lo:
        hi = lo + 1.0
    return np.linspace(lo, hi, n_bins + 1)
