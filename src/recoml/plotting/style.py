"""Figure style and saving: headless Agg backend, optional mplhep experiment style, PNG + PDF.

Plots are written by batch jobs and tests without a display, so the Agg backend is selected before pyplot
is imported. ``style`` is an mplhep style name (``ATLAS``, ``CMS``, ``LHCb2``, ``ROOT``, ...) or ``None``
for matplotlib's defaults with a few readability tweaks.
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

_BASE: dict[RcKeyType, Any] = {
    "figure.figsize": (6.4, 4.8),
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.frameon": False,
    "savefig.bbox": "tight",
    "savefig.dpi": 120,
}


def apply_style(style: str | None = None) -> None:
    """Use matplotlib defaults plus :data:`_BASE`, or an mplhep style by name."""
    plt.rcParams.update(matplotlib.rcParamsDefault)
    matplotlib.use("Agg")
    if style:
        import mplhep

        try:
            plt.style.use(getattr(mplhep.style, style))
        except AttributeError:
            known = sorted(n for n in dir(mplhep.style) if n[:1].isupper())
            raise ConfigError(f"plot_style: unknown mplhep style '{style}'; known: {known}") from None
    plt.rcParams.update(_BASE)


def figure(ncols: int = 1, width: float = 6.4, height: float = 4.8):
    """A new figure with ``ncols`` axes side by side."""
    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False)
    return fig, list(axes[0])


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
