"""Generic overlay plots: every function takes one entry per run, so a comparison of a CNN and a GNN (or
two detector configurations) puts all of them on the same axes, each run keeping its colour (``C<i>``)
in every figure. The functions know nothing about predictions files; evaluators feed them numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from recoml.metrics.physics import wilson_interval
from recoml.plotting.style import figure, finish


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
) -> str:
    """Binned quantities (resolution, bias, efficiency) of several runs on one axes; returns the panel's
    title for :func:`~recoml.plotting.style.finish`."""
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
    if series:
        ax.legend(loc="best")
    return title


def plot_lines(series: Sequence[Series], xlabel: str, ylabel: str, **kwargs):
    """A figure with one axes of :func:`draw_lines`."""
    fig, (ax,) = figure()
    return finish(fig, panel_titles={ax: draw_lines(ax, series, xlabel, ylabel, **kwargs)})


def plot_panels(panels: Sequence[dict], title: str = ""):
    """Side-by-side axes, each the keyword arguments of :func:`draw_lines` (``series``, ``xlabel``, ...)."""
    fig, axes = figure(ncols=len(panels))
    titles = {ax: draw_lines(ax, **panel) for ax, panel in zip(axes, panels)}
    return finish(fig, title, titles)


def plot_species(
    series: Mapping[str, Sequence[Series]], xlabel: str, ylabel: str, title: str = "", **kwargs: Any
):
    """One panel per true species (``{species: runs' series}``), titled ``true <species>``."""
    panels = [
        {"series": runs, "xlabel": xlabel, "ylabel": ylabel, "title": f"true {sp}", **kwargs}
        for sp, runs in series.items()
    ]
    return plot_panels(panels, title)


def plot_roc(
    series: Sequence[Series],
    title: str = "",
    n_background: Sequence[int] | None = None,
    efficiencies: Sequence[float] = (0.9,),
):
    """Left: ROC (signal efficiency vs background efficiency, ``x``/``y`` of each series). Right:
    background rejection ``1 / eps_bkg`` vs signal efficiency on a log scale (the HEP convention), from
    ``min(efficiencies) - 0.2`` to 1, where the working points are.

    With ``n_background`` (background events per series) the rejection carries its Wilson 68.3% band,
    and where no background passes the curve ends in a lower limit, ``1 / upper bound of eps_bkg`` =
    ``N + 1`` (the same interval), drawn as a dashed line with upward arrows.
    """
    fig, (left, right) = figure(ncols=2)
    x_min = max(0.0, min(efficiencies, default=0.9) - 0.2)
    drawn = False  # any rejection point or limit on the right panel
    for i, s in enumerate(series):
        color = f"C{s.color}"
        left.plot(s.x, s.y, color=color, label=s.label)
        ok = (s.x > 0) & np.isfinite(s.x) & (s.y >= x_min)
        right.plot(s.y[ok], 1.0 / s.x[ok], color=color, label=s.label)
        drawn |= bool(ok.any())
        if n_background is None:
            continue
        n = float(n_background[i])
        lo, hi = wilson_interval(s.x[ok] * n, np.full(ok.sum(), n))
        upper = 1.0 / np.where(lo > 0, lo, np.nan)
        right.fill_between(s.y[ok], 1.0 / hi, upper, color=color, alpha=0.2, linewidth=0)
        free = (s.x == 0) & (s.y >= x_min)
        if free.any():
            drawn = True
            limit = n + 1.0
            span = [s.y[free].min(), s.y[free].max()]
            right.plot(span, [limit, limit], color=color, linestyle="--")
            right.plot(span, [limit, limit], color=color, linestyle="none", marker=r"$\uparrow$", ms=10)
            right.plot([], [], color=color, linestyle="--", label=f"no background passes: > {limit:.0f}")
    left.plot([0, 1], [0, 1], color="0.6", linestyle=":", linewidth=0.8)
    left.set_xlabel("background efficiency")
    left.set_ylabel("signal efficiency")
    left.set_xlim(0, 1)
    left.set_ylim(0, 1.02)
    right.set_xlabel("signal efficiency")
    right.set_ylabel("background rejection (1 / efficiency)")
    if drawn:
        right.set_yscale("log")
    else:  # no background event (efficiency undefined) or no point in range: say so, no empty log axis
        right.text(
            0.5,
            0.5,
            "no rejection to show\n(no background events in range)",
            ha="center",
            va="center",
            transform=right.transAxes,
        )
    right.set_xlim(x_min, 1)
    for e in efficiencies:
        right.axvline(e, color="0.7", linewidth=0.6, linestyle=":")
    for ax in (left, right):
        ax.legend(fontsize="small")
    return finish(fig, title)


def _unit(label: str) -> str:
    """``"true energy [MeV]"`` -> ``"MeV"``; ``""`` without a unit."""
    return label.rsplit("[", 1)[1].rstrip("] ") if label.endswith("]") and "[" in label else ""


def plot_histograms(
    samples: Sequence[tuple],
    bins: np.ndarray | int,
    xlabel: str,
    title: str = "",
    density: bool = True,
    logy: bool = False,
    vline: float | None = None,
):
    """Step histograms (``hist`` + ``mplhep.histplot``) of ``(label, values, colour[, linestyle])`` per run,
    with Poisson 68% error bars, unit area by default. Each legend entry gives the run's event count and
    how many fell below / above the bins (under/overflow, not drawn); NaN values are left out."""
    import hist
    import mplhep

    fig, (ax,) = figure()
    if np.ndim(bins) == 0:
        values = np.concatenate([np.asarray(v[1], float).reshape(-1) for v in samples])
        bins = edges_for([values], int(bins))
    edges = np.asarray(bins, dtype=np.float64)
    for label, values, color, *rest in samples:
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        values = values[np.isfinite(values)]
        if len(values) == 0:
            continue
        h: Any = hist.Hist(hist.axis.Variable(edges, underflow=True, overflow=True))
        h.fill(values)
        flow = h.view(flow=True)
        under, over = int(flow[0]), int(flow[-1])
        note = f"{label}: N = {len(values)}"
        if under or over:
            note += f" ({under} under, {over} over)"
        mplhep.histplot(
            h,
            ax=ax,
            yerr=True,
            density=density,
            histtype="step",
            color=f"C{color}",
            linestyle=rest[0] if rest else "-",
            label=note,
            flow="none",
        )
    if vline is not None:
        ax.axvline(vline, color="0.5", linewidth=0.8)
    ax.set_xlabel(xlabel)
    unit = _unit(xlabel)
    if density:
        ax.set_ylabel(f"(1/N) dN/dx [1/{unit}]" if unit else "(1/N) dN/dx")
    else:
        ax.set_ylabel("events / bin")
    if logy:
        ax.set_yscale("log")
    ax.legend(fontsize="small")
    return finish(fig, title)


def plot_2d(
    panels: Sequence[tuple[str, np.ndarray, np.ndarray]],
    xbins: np.ndarray,
    ybins: np.ndarray,
    xlabel: str,
    ylabel: str,
    title: str = "",
    diagonal: bool = True,
):
    """2D histograms (filled with ``hist``), one panel per ``(label, x, y)``, log colour scale
    of events per bin, the diagonal ``y = x`` for reco-vs-true; the panel title gives the event count and
    the entries outside the ranges."""
    import hist
    from matplotlib.colors import LogNorm

    fig, axes = figure(ncols=len(panels), scale=(1.1, 1.0))
    titles = {}
    for ax, (label, x, y) in zip(axes, panels):
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        ok = np.isfinite(x) & np.isfinite(y)
        h: Any = hist.Hist(hist.axis.Variable(xbins), hist.axis.Variable(ybins))
        h.fill(x[ok], y[ok])
        outside = int(ok.sum() - h.sum())
        counts = np.ma.masked_equal(h.values().T, 0)
        mesh = ax.pcolormesh(xbins, ybins, counts, norm=LogNorm() if counts.count() else None, cmap="viridis")
        fig.colorbar(mesh, ax=ax, label="events / bin")
        if diagonal:
            lo, hi = max(xbins[0], ybins[0]), min(xbins[-1], ybins[-1])
            ax.plot([lo, hi], [lo, hi], color="C3", linewidth=1.0, linestyle="--")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        titles[ax] = f"{label}: N = {int(ok.sum())}" + (f", {outside} outside" if outside else "")
    return finish(fig, title, titles)


def plot_confusion(matrices: Sequence[tuple[str, np.ndarray]], class_names: Sequence[str], title: str = ""):
    """Row-normalized confusion matrices, one panel per run (true class on y, predicted on x)."""
    fig, axes = figure(ncols=len(matrices), scale=(0.85, 0.9))
    n = len(class_names)
    titles = {}
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
        ax.minorticks_off()
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        titles[ax] = label
    return finish(fig, title, titles)


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
