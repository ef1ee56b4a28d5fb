"""Figure style and saving: headless Agg backend, optional mplhep experiment style, PNG + PDF.

Plots are written by batch jobs and tests without a display, so the Agg backend is selected before pyplot
is imported. ``style`` is an mplhep style name (``ATLAS``, ``CMS``, ``LHCb``, ``ROOT``, ...) or ``None``
for matplotlib's defaults with a grid. Every figure uses constrained layout at the style's own size, and
titles go through :func:`finish`, so labels, titles and tick labels never overlap.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from recoml.errors import ConfigError  # noqa: E402
from recoml.io.atomic import atomic_output

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType

log = logging.getLogger(__name__)

#: Formats every figure is saved in.
FORMATS = ("png", "pdf")

#: Always: no legend frames, tight bounding boxes, readable resolution.
_COMMON: dict[RcKeyType, Any] = {
    "legend.frameon": False,
    "savefig.bbox": "tight",
    "savefig.dpi": 120,
}
#: Without an experiment style: matplotlib's defaults plus a light grid.
_PLAIN: dict[RcKeyType, Any] = {"figure.figsize": (6.4, 4.8), "axes.grid": True, "grid.alpha": 0.3}
#: Experiments whose styles come with a label ("ATLAS Simulation", "CMS Simulation", ...).
EXPERIMENTS = ("ATLAS", "CMS", "LHCb", "ALICE", "DUNE")

_state: dict[str, str | None] = {"style": None, "experiment": None}


def _style_name(style: str) -> str:
    """An mplhep style by name, case-insensitively; ``LHCb`` is mplhep's current ``LHCb2``."""
    import mplhep

    known = {n.lower(): n for n in dir(mplhep.style) if n[:1].isupper()}
    name = known.get(style.lower())
    if style.lower() == "lhcb":
        name = "LHCb2"
    if name is None:
        raise ConfigError(f"plot_style: unknown mplhep style '{style}'; known: {sorted(known.values())}")
    return name


def apply_style(style: str | None = None) -> None:
    """Use matplotlib's defaults plus a grid, or an mplhep style by name (``ATLAS``, ``CMS``, ``LHCb``,
    ``ROOT``, ...): its fonts, ticks and figure size are kept, and figures of an experiment's style carry
    its label ("ATLAS Simulation") above every panel."""
    plt.rcParams.update(matplotlib.rcParamsDefault)
    matplotlib.use("Agg")
    _state["style"] = _state["experiment"] = None
    if style:
        import mplhep

        name = _style_name(style)
        plt.style.use(getattr(mplhep.style, name))
        _state["style"] = name
        _state["experiment"] = next((e for e in EXPERIMENTS if name.lower().startswith(e.lower())), None)
    else:
        plt.rcParams.update(_PLAIN)
    plt.rcParams.update(_COMMON)


def current_style() -> str | None:
    """The mplhep style in use (None: matplotlib's)."""
    return _state["style"]


def figure(ncols: int = 1, scale: tuple[float, float] = (1.0, 1.0), nrows: int = 1):
    """A new figure with ``nrows x ncols`` axes (a flat list), constrained layout (nothing overlaps), each
    panel the style's figure size times ``scale``."""
    w, h = plt.rcParams["figure.figsize"]
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(w * scale[0] * ncols, h * scale[1] * nrows),
        squeeze=False,
        layout="constrained",
    )
    return fig, [ax for row in axes for ax in row]


def finish(fig, title: str = "", panel_titles: dict | None = None):
    """Titles and labels, placed so they never overlap: with an experiment style each panel gets the
    experiment label above it on the left ("CMS Simulation") and its own title on the right; the figure
    title goes above everything. ``panel_titles`` maps axes to their titles."""
    panel_titles = panel_titles or {}
    for ax in fig.axes:
        text = panel_titles.get(ax, "")
        if _state["experiment"] and ax.get_label() != "<colorbar>":
            import mplhep

            mplhep.label.exp_label(exp=_state["experiment"], data=False, com=None, loc=0, rlabel=text, ax=ax)
        elif text:
            ax.set_title(text)
    if title:
        fig.suptitle(title)
    return fig


def save_figure(fig, directory: str | os.PathLike, stem: str) -> dict[str, Path]:
    """Save ``fig`` as ``<directory>/<stem>.png`` and ``.pdf`` (temporary names, then renamed); close it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    try:
        for fmt in FORMATS:
            path = directory / f"{stem}.{fmt}"
            with atomic_output(path) as tmp:
                fig.savefig(tmp, format=fmt)
            out[fmt] = path
    finally:
        plt.close(fig)
    return out
