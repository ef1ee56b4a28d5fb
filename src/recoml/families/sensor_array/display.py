"""Sensor-array event displays (KM3NeT: optical modules on vertical strings): a static projection of the
strings against height and a top view, and a 3D view.

Hits are summed per module (a KM3NeT DOM holds 31 PMTs within 22 cm, a dot at the scale of the array):
a hit module's charge is the sum of its hits' ``hit_charge`` (photo-electrons in the toy simulation,
time over threshold in ns in KM3NeT files) and its time the earliest of its hits' ``hit_time``, drawn
relative to the event's first hit (ns: real files' times carry the timeslice clock, ~1e7 ns).
Height is ``z`` (cm), the strings' axis in KM3NeT's frame; strings are numbered in the order of the
detector's ``string_index`` (a detector without strings is drawn against ``x`` instead).

On top of the hits: the true and, with predictions, the predicted track or shower. A muon (label 2) is
a straight line through its stored position across the array's bounding box; a shower is its vertex
with a short arrow along its direction. The predicted vertex falls back on the true one when only a
direction is predicted.
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import Normalize

from recoml.families.sensor_array.sim import PARTICLES
from recoml.plotting.events import EventView, grouped_hits, layout_3d, mev, predicted_summary

__all__ = ["figures", "interactive", "module_hits", "track_line"]

LABEL_NAMES = {label: name for name, label in PARTICLES.items()}
MUON = PARTICLES["mu-"]
CHARGE_LABEL = "charge per module (summed hit_charge)"
TIME_LABEL = "first hit time after the event's first hit [ns]"


def module_hits(event: EventView, detector: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hit modules (``detector.module_index`` values), their summed charge and earliest hit time."""
    return grouped_hits(event, detector.n_sensors, "a sensor-array display", detector.module_index)


def _relative(time: np.ndarray) -> np.ndarray:
    return time - time.min() if len(time) else time


def _module_positions(detector: Any) -> np.ndarray:
    """``(M, 3)`` centre of each module's sensors (cm)."""
    index = np.asarray(detector.module_index, dtype=np.int64)
    pos = np.asarray(detector.sensor_positions, dtype=np.float64)
    counts = np.bincount(index, minlength=detector.n_modules).clip(min=1)[:, None]
    sums = [np.bincount(index, pos[:, a], minlength=detector.n_modules) for a in range(3)]
    return np.stack(sums, axis=1) / counts


def _module_strings(detector: Any) -> np.ndarray:
    """``(M,)`` string of each module (the string of its first sensor; -1 without strings)."""
    out = np.full(detector.n_modules, -1, dtype=np.int64)
    index = np.asarray(detector.module_index, dtype=np.int64)
    out[index[::-1]] = np.asarray(detector.string_index, dtype=np.int64)[::-1]
    return out


def _vector(value: Any) -> np.ndarray | None:
    if value is None:
        return None
    v = np.asarray(value, dtype=np.float64).reshape(-1)
    return v[:3] if len(v) >= 3 and np.all(np.isfinite(v[:3])) else None


def _label(event: EventView) -> int | None:
    label = event.truth.get("labels", event.predicted.get("aux_label"))
    return None if label is None else int(np.asarray(label).reshape(-1)[0])


def _tracks(event: EventView) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"true": (position, direction), "predicted": (...)}`` for what the event knows."""
    out = {}
    vertex = _vector(event.truth.get("positions", event.predicted.get("aux_vertex")))
    direction = _vector(event.truth.get("directions", event.predicted.get("aux_direction")))
    if vertex is not None and direction is not None and np.linalg.norm(direction) > 0:
        out["true"] = (vertex, direction / np.linalg.norm(direction))
    p_vertex = _vector(event.predicted_field("position"))
    p_direction = _vector(event.predicted_field("direction"))
    v = p_vertex if p_vertex is not None else vertex
    d = p_direction if p_direction is not None else direction
    if (p_vertex is not None or p_direction is not None) and v is not None and d is not None:
        if np.linalg.norm(d) > 0:
            out["predicted"] = (v, d / np.linalg.norm(d))
    return out


def track_line(point: np.ndarray, direction: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``(2, 3)`` ends of the line through ``point`` along ``direction`` inside the box ``[lo, hi]``
    (slab clipping); the point alone twice when the line misses the box."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t1, t2 = (lo - point) / direction, (hi - point) / direction
    t1 = np.where(direction == 0, -np.inf, t1)
    t2 = np.where(direction == 0, np.inf, t2)
    inside = (direction != 0) | ((point >= lo) & (point <= hi))
    t_in, t_out = np.max(np.minimum(t1, t2)), np.min(np.maximum(t1, t2))
    if not inside.all() or t_in > t_out:
        return np.stack([point, point])
    return np.stack([point + t_in * direction, point + t_out * direction])


def _segment(event: EventView, what: str, detector: Any) -> np.ndarray:
    """What is drawn of a track (muon: across the box) or a shower (vertex + 10% of the array's size)."""
    point, direction = _tracks(event)[what]
    lo = detector.centre - detector.half_extent * 1.05
    hi = detector.centre + detector.half_extent * 1.05
    if _label(event) == MUON:
        return track_line(point, direction, lo, hi)
    return np.stack([point, point + 0.1 * float(np.linalg.norm(hi - lo)) * direction])


def _energy(value: float) -> str:
    return f"{value / 1000:.1f} GeV" if value >= 1000 else mev(value)


def _title(event: EventView) -> str:
    parts = [f"event {event.index}"]
    label = _label(event)
    if label is not None:
        parts.append(f"true {LABEL_NAMES.get(label, f'label {label}')}")
    energy = event.truth.get("energies", event.predicted.get("aux_energy"))
    if energy is not None:
        parts.append(_energy(float(np.asarray(energy).reshape(-1)[0])))
    title = "; ".join(parts + predicted_summary(event, _energy))
    return f"{title}\n{event.caption}" if event.caption else title


def _sizes(charge: np.ndarray) -> np.ndarray:
    """Marker areas growing with the square root of the charge (8 to 120 points^2)."""
    if len(charge) == 0:
        return charge
    top = max(float(np.sqrt(np.clip(charge, 0, None)).max()), 1e-9)
    return 8.0 + 112.0 * np.sqrt(np.clip(charge, 0, None)) / top


def figures(event: EventView, detector: Any) -> list[tuple[str, str, Any]]:
    """Strings against height (hit modules coloured by first hit time, sized by charge) next to a top
    view of the strings (hit strings coloured by their first hit time) with the tracks projected."""
    hit, charge, time = module_hits(event, detector)
    time = _relative(time)
    pos = _module_positions(detector)
    strings = _module_strings(detector)
    tnorm = Normalize(*np.percentile(time, [2, 98])) if len(time) else Normalize()
    fig, (side, top) = plt.subplots(
        1, 2, figsize=(13.5, 6.0), layout="constrained", gridspec_kw={"width_ratios": [1.5, 1]}
    )
    if (strings >= 0).any():
        ids, column = np.unique(strings, return_inverse=True)
        side.set_xlabel(f"string ({len(ids)} strings, in the detector's order)")
        if len(ids) <= 30:
            side.set_xticks(range(len(ids)), [str(i) for i in ids], fontsize="small")
    else:
        column = pos[:, 0]
        side.set_xlabel("x [cm]")
    side.scatter(column, pos[:, 2], s=3, color="0.8", linewidths=0, label="modules")
    order = np.argsort(-charge)  # small markers on top of large ones
    sc = side.scatter(
        column[hit][order],
        pos[hit, 2][order],
        s=_sizes(charge)[order],
        c=time[order],
        cmap="plasma",
        norm=tnorm,
        edgecolors="k",
        linewidths=0.3,
        label="hit modules",
    )
    side.set_ylabel("height z [cm]")
    side.set_title(f"{len(hit)} modules hit, {charge.sum():.0f} summed charge; size ~ sqrt(charge)")
    fig.colorbar(sc, ax=side, label=TIME_LABEL, shrink=0.85)

    top.scatter(pos[:, 0], pos[:, 1], s=6, color="0.8", linewidths=0)
    if len(hit):
        # per hit string (or module, without strings): its earliest time, its summed charge
        key = strings[hit] if (strings >= 0).any() else hit
        groups, where = np.unique(key, return_inverse=True)
        g_time = np.full(len(groups), np.inf)
        np.minimum.at(g_time, where, time)
        g_charge = np.bincount(where, charge, minlength=len(groups))
        first = np.array([hit[where == g][0] for g in range(len(groups))])
        top.scatter(
            pos[first, 0],
            pos[first, 1],
            s=_sizes(g_charge),
            c=g_time,
            cmap="plasma",
            norm=tnorm,
            edgecolors="k",
            linewidths=0.3,
        )
    for what, (style, colour) in {"true": ("-", "k"), "predicted": ("--", "C3")}.items():
        if what in _tracks(event):
            ends = _segment(event, what, detector)
            top.plot(ends[:, 0], ends[:, 1], linestyle=style, color=colour, lw=1.2, label=f"{what} track")
            top.plot(*_tracks(event)[what][0][:2], marker="*", color=colour, ms=9, linestyle="none")
    top.set_xlabel("x [cm]")
    top.set_ylabel("y [cm]")
    top.set_aspect("equal")
    top.set_title("top view: hit strings, size ~ sqrt(charge)")
    if _tracks(event):
        top.legend(loc="upper right", fontsize="x-small")
    fig.suptitle(_title(event), fontsize="medium")
    return [("strings", f"Event {event.index}: strings against height and a top view", fig)]


def _xyz(points: np.ndarray) -> dict[str, np.ndarray]:
    return {"x": points[:, 0], "y": points[:, 1], "z": points[:, 2]}


def interactive(event: EventView, detector: Any):
    """Plotly 3D view: every module (grey), hit modules coloured by first hit time and sized by charge
    (hover: module, string, charge, time), the true and predicted tracks."""
    import plotly.graph_objects as go

    hit, charge, time = module_hits(event, detector)
    time = _relative(time)
    pos = _module_positions(detector)
    strings = _module_strings(detector)
    fig = go.Figure()
    fig.add_trace(
        go.Scatter3d(
            **_xyz(pos),
            mode="markers",
            name="modules",
            marker={"size": 1.5, "color": "lightgrey", "opacity": 0.5},
            hoverinfo="skip",
        )
    )
    fig.add_trace(
        go.Scatter3d(
            **_xyz(pos[hit]),
            mode="markers",
            name="hit modules",
            marker={
                "size": 3 + _sizes(charge) / 12,
                "color": time,
                "colorscale": "Plasma",
                "colorbar": {"title": TIME_LABEL},
            },
            text=[
                f"module {m} (string {s}): charge {q:.1f}, first hit {t:.1f} ns"
                for m, s, q, t in zip(hit, strings[hit], charge, time)
            ],
            hoverinfo="text",
        )
    )
    for what, colour in (("true", "black"), ("predicted", "red")):
        if what not in _tracks(event):
            continue
        ends = _segment(event, what, detector)
        fig.add_trace(
            go.Scatter3d(
                **_xyz(ends),
                mode="lines",
                name=f"{what} track",
                line={"color": colour, "width": 5, "dash": "solid" if what == "true" else "dash"},
            )
        )
    return layout_3d(fig, _title(event), ("x [cm]", "y [cm]", "z (height) [cm]"))
