"""Event displays, generic part: what one event to draw holds, and the dispatcher that hands it to the
drawing code of the detector's family.

The engine knows no detector family. A detector class names the module that draws its events in its
``event_display`` class attribute (a dotted module path, the same wiring as a config ``_target_``); that
module provides

* ``figures(event: EventView, detector) -> list[tuple[str, str, Figure]]``: ``(name, title, figure)``
  of every static view (PNG + PDF);
* ``interactive(event: EventView, detector) -> plotly Figure``: the 3D view, written as HTML.

So a new detector family gets event displays by writing that module and naming it on its detector
class, with no edit here.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from recoml.errors import ConfigError, DataError
from recoml.io.atomic import atomic_output
from recoml.plotting.style import save_figure

__all__ = [
    "EventView",
    "display_module",
    "draw_event",
    "grouped_hits",
    "layout_3d",
    "mev",
    "predicted_summary",
    "write_html",
]


@dataclass
class EventView:
    """Everything known about one event.

    ``index``: the event's row in its store. ``hits``: its flat hit fields by store name (``hit_pmt``,
    ``hit_charge``, ``hit_x`` ...). ``truth``: its per-event store fields (``labels``, ``energies``,
    ``positions (1, 3)``, ``directions (1, 3)`` ...). ``predicted``: its row of a predictions file
    (``pred_*``, ``true_*``, ``aux_*``), empty without one; ``sections`` that file's task sections (class
    names). ``objects``: per-event objects of the predictions file (tracking: ``edges``, ``hits``,
    ``particles``), event-local. ``caption``: why this event was chosen (e.g. "worst energy residual").
    """

    index: int
    hits: dict[str, np.ndarray] = field(default_factory=dict)
    truth: dict[str, np.ndarray] = field(default_factory=dict)
    predicted: dict[str, np.ndarray] = field(default_factory=dict)
    sections: list[dict[str, Any]] = field(default_factory=list)
    objects: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    caption: str = ""

    def predicted_field(self, suffix: str) -> np.ndarray | None:
        """The first ``pred_*`` field whose name ends with ``suffix`` (``position``, ``direction``; multi-task
        files prefix the sub-task: ``pred_vertex.position``), or None."""
        for name, value in self.predicted.items():
            if name.startswith("pred_") and name.endswith(suffix):
                return np.asarray(value)
        return None


#: The hit fields the event displays of sensor detectors read.
SENSOR_HIT_FIELDS = ("hit_pmt", "hit_charge", "hit_time")


def grouped_hits(
    event: EventView, n_sensors: int, what: str, group: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The hit sensors of ``event`` (or, with ``group`` mapping each sensor to a group, e.g. its module,
    the hit groups), their summed ``hit_charge`` and earliest ``hit_time``. DataError naming the display
    (``what``) when a hit field is missing or a ``hit_pmt`` is not one of the ``n_sensors``."""
    missing = [f for f in SENSOR_HIT_FIELDS if f not in event.hits]
    if missing:
        raise DataError(
            f"event {event.index}: hit fields {missing} are missing; {what} needs {list(SENSOR_HIT_FIELDS)}"
        )
    sensor = np.asarray(event.hits["hit_pmt"], dtype=np.int64)
    if len(sensor) and (sensor.min() < 0 or sensor.max() >= n_sensors):
        raise DataError(
            f"event {event.index}: hit_pmt {int(sensor.max())} is outside the detector's {n_sensors} sensors"
        )
    key = sensor if group is None else np.asarray(group, dtype=np.int64)[sensor]
    size = n_sensors if group is None else int(np.max(group, initial=-1)) + 1
    charge = np.bincount(key, np.asarray(event.hits["hit_charge"], np.float64), minlength=size)
    time = np.full(size, np.inf)
    np.minimum.at(time, key, np.asarray(event.hits["hit_time"], np.float64))
    hit = np.unique(key)
    return hit, charge[hit], time[hit]


def mev(value: float) -> str:
    """An energy in MeV as a title shows it."""
    return f"{value:.0f} MeV"


def predicted_summary(event: EventView, energy: Callable[[float], str] = mev) -> list[str]:
    """What a title says of an event's predictions: each classification section's class probabilities
    (``predicted e 0.10, mu 0.90``) and the predicted energy (written by ``energy``)."""
    parts = []
    for section in event.sections:
        names = section.get("class_names")
        probs = event.predicted.get(f"pred_{section.get('prefix', '')}probabilities")
        if names and probs is not None:
            p = np.asarray(probs, dtype=float).reshape(-1)
            parts.append("predicted " + ", ".join(f"{n} {x:.2f}" for n, x in zip(names, p)))
    e_pred = event.predicted_field("energy")
    if e_pred is not None:
        parts.append(f"predicted {energy(float(e_pred.reshape(-1)[0]))}")
    return parts


def display_module(detector: Any) -> ModuleType:
    """The drawing module the detector's family names in ``event_display``; ConfigError if none."""
    path = detector.event_display
    if not isinstance(path, str) or not path:
        raise ConfigError(
            f"detector '{detector.name}' ({type(detector).__name__}) "
            "names no event display: set its class attribute event_display to a module with figures() "
            "and interactive()"
        )
    try:
        return importlib.import_module(path)
    except ImportError as exc:
        raise ConfigError(f"event_display: cannot import '{path}' ({exc})") from exc


def layout_3d(fig: Any, title: str, axes: tuple[str, str, str]) -> Any:
    """Title (line breaks kept), axis titles with units, true proportions and slim margins of a 3D view."""
    x, y, z = axes
    fig.update_layout(
        title=title.replace("\n", "<br>"),
        scene={"xaxis_title": x, "yaxis_title": y, "zaxis_title": z, "aspectmode": "data"},
        margin={"l": 0, "r": 0, "t": 60, "b": 0},
    )
    return fig


def write_html(fig: Any, path: str | os.PathLike) -> Path:
    """A plotly figure as a standalone-directory HTML page (plotly.js once beside it, so pages open offline),
    written under a temporary name and renamed."""
    path = Path(path)
    with atomic_output(path) as tmp:
        fig.write_html(tmp, include_plotlyjs="directory", full_html=True)
    return path


def draw_event(
    event: EventView, detector: Any, directory: str | os.PathLike, html: bool = True
) -> list[tuple[str, dict[str, Path]]]:
    """Draw ``event`` with its family's display into ``directory``: ``event<index>_<name>.png|pdf`` per view
    and ``event<index>_3d.html``. Returns ``(title, files)`` per view written."""
    module = display_module(detector)
    directory = Path(directory)
    out: list[tuple[str, dict[str, Path]]] = []
    for name, title, fig in module.figures(event, detector):
        out.append((title, save_figure(fig, directory, f"event{event.index}_{name}")))
    if html:
        path = write_html(module.interactive(event, detector), directory / f"event{event.index}_3d.html")
        out.append((f"event {event.index}: interactive 3D view", {"html": path}))
    return out
