"""Water-Cherenkov event displays: the tank unrolled (barrel + end caps), the CNN's image, a 3D view.

Unrolled view (cm, tank axis y): the barrel is cut at azimuth pi and laid flat, ``u = R * phi`` with
``phi = atan2(z, x)`` and ``v = y``; each end cap is folded out about the barrel edge at ``phi = 0``
(the point ``x = R, z = 0``), so ``u = z`` and ``v = +-(H + R - x)``. Every PMT is drawn where it sits;
the modules of an mPMT detector are outlined, so their 19-PMT structure shows.

On top of the hits: the true vertex direction's exit point on the wall (star) and the ring a
``beta = 1`` particle's Cherenkov cone from the true vertex draws on the wall (solid), and the same for
the predicted vertex/direction when the event comes with predictions (dashed; the true vertex is used
with a predicted direction when no vertex is predicted). The cone half-angle is
``arccos(1 / n)`` with the toy simulation's water index ``n = 1.33`` (41.2 degrees).
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.collections import EllipseCollection
from matplotlib.colors import LogNorm, Normalize

from recoml.metrics.physics import towall
from recoml.plotting.events import EventView, grouped_hits, layout_3d, predicted_summary

__all__ = ["figures", "interactive", "unroll"]

#: Stored particle labels (docs/architecture.md): gamma 0, e 1, mu 2, pi0 3.
LABEL_NAMES = {0: "gamma", 1: "e", 2: "mu", 3: "pi0"}
#: Cherenkov half-angle of a beta = 1 particle in water (n = 1.33), degrees.
CHERENKOV_ANGLE = float(np.degrees(np.arccos(1.0 / 1.33)))


def unroll(points: np.ndarray, radius: float, half_height: float, location: np.ndarray | None = None):
    """``(u, v)`` of points on (or just inside) the tank wall; ``location`` 0 top, 1 barrel, 2 bottom
    (default: a cap when ``|y|`` is within 0.1% of the half height)."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if location is None:
        location = np.where(np.abs(p[:, 1]) >= half_height * (1 - 1e-3), np.where(p[:, 1] > 0, 0, 2), 1)
    sign = np.where(location == 0, 1.0, -1.0)
    cap_v = sign * (half_height + radius - p[:, 0])
    barrel = location == 1
    u = np.where(barrel, radius * np.arctan2(p[:, 2], p[:, 0]), p[:, 2])
    v = np.where(barrel, p[:, 1], cap_v)
    return u, v


def _per_pmt(event: EventView, n_pmts: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hit PMTs, their summed charge and earliest time."""
    return grouped_hits(event, n_pmts, "a water-Cherenkov display")


def _vector(value: Any) -> np.ndarray | None:
    if value is None:
        return None
    v = np.asarray(value, dtype=np.float64).reshape(-1)
    return v[:3] if len(v) >= 3 and np.all(np.isfinite(v[:3])) else None


def _tracks(event: EventView) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"true": (vertex, direction), "predicted": (...)}`` for what the event knows."""
    out = {}
    vertex = _vector(event.truth.get("positions", event.predicted.get("aux_vertex")))
    direction = _vector(event.truth.get("directions", event.predicted.get("aux_direction")))
    if vertex is not None and direction is not None:
        out["true"] = (vertex, direction / np.linalg.norm(direction))
    p_vertex = _vector(event.predicted_field("position"))
    p_direction = _vector(event.predicted_field("direction"))
    if p_direction is not None or p_vertex is not None:
        v = p_vertex if p_vertex is not None else vertex
        d = p_direction if p_direction is not None else direction
        if v is not None and d is not None and np.linalg.norm(d) > 0:
            out["predicted"] = (v, d / np.linalg.norm(d))
    return out


def _ring(vertex: np.ndarray, direction: np.ndarray, radius: float, half_height: float, n: int = 360):
    """Wall points of the Cherenkov cone around ``direction`` from ``vertex``, unrolled, with NaN breaks
    where the ring crosses the barrel cut or a barrel/cap edge."""
    helper = np.array([1.0, 0.0, 0.0]) if abs(direction[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = np.cross(direction, helper)
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(direction, e1)
    a = np.linspace(0.0, 2 * np.pi, n + 1)
    theta = np.radians(CHERENKOV_ANGLE)
    rays = np.cos(theta) * direction + np.sin(theta) * (np.cos(a)[:, None] * e1 + np.sin(a)[:, None] * e2)
    start = np.repeat(vertex[None], len(rays), 0)
    points = start + towall(start, rays, radius, half_height)[:, None] * rays
    u, v = unroll(points, radius, half_height)
    cap = np.abs(points[:, 1]) >= half_height * (1 - 1e-3)
    jump = np.r_[False, (np.diff(cap.astype(int)) != 0) | (np.abs(np.diff(u)) > 0.5 * radius)]
    return np.insert(u, np.flatnonzero(jump), np.nan), np.insert(v, np.flatnonzero(jump), np.nan)


def _exit_point(vertex, direction, radius, half_height):
    point = vertex + towall(vertex[None], direction[None], radius, half_height)[0] * direction
    return unroll(point[None], radius, half_height)


def _outline(ax, radius: float, half_height: float) -> None:
    """Barrel rectangle and the two cap circles."""
    width = np.pi * radius
    ax.plot(
        [-width, width, width, -width, -width],
        [-half_height, -half_height, half_height, half_height, -half_height],
        color="0.6",
        lw=0.6,
    )
    t = np.linspace(0, 2 * np.pi, 200)
    for sign in (1, -1):
        ax.plot(radius * np.sin(t), sign * (half_height + radius + radius * np.cos(t)), color="0.6", lw=0.6)


def _modules(ax, detector: Any, u: np.ndarray, v: np.ndarray) -> None:
    """Circles around each module's PMTs (mPMT detectors only)."""
    k = detector.pmts_per_module
    if k <= 1:
        return
    cu, cv = u.reshape(-1, k).mean(1), v.reshape(-1, k).mean(1)
    size = 2 * (
        np.hypot(u.reshape(-1, k) - cu[:, None], v.reshape(-1, k) - cv[:, None]).max(1) + detector.pmt_radius
    )
    ax.add_collection(
        EllipseCollection(
            size,
            size,
            0.0,
            units="xy",
            offsets=np.stack([cu, cv], 1),
            offset_transform=ax.transData,
            facecolors="none",
            edgecolors="0.75",
            linewidths=0.4,
        )
    )


def _title(event: EventView) -> str:
    parts = [f"event {event.index}"]
    label = event.truth.get("labels", event.predicted.get("aux_label"))
    energy = event.truth.get("energies", event.predicted.get("aux_energy"))
    if label is not None:
        parts.append(f"true {LABEL_NAMES.get(int(np.asarray(label).reshape(-1)[0]), 'other')}")
    if energy is not None:
        parts.append(f"{float(np.asarray(energy).reshape(-1)[0]):.0f} MeV")
    title = "; ".join(parts + predicted_summary(event))
    return f"{title}\n{event.caption}" if event.caption else title


def _unrolled_panel(ax, detector, u, v, hit, values, label: str, norm, cmap: str, tracks) -> None:
    R, H = detector.radius, detector.half_height
    _outline(ax, R, H)
    _modules(ax, detector, u, v)
    ax.scatter(u, v, s=1.0, color="0.85", linewidths=0, zorder=1)
    order = np.argsort(values)
    sc = ax.scatter(
        u[hit][order], v[hit][order], c=values[order], s=6, cmap=cmap, norm=norm, linewidths=0, zorder=2
    )
    ax.figure.colorbar(sc, ax=ax, label=label, shrink=0.8)
    for what, style, marker in (("true", "-", "*"), ("predicted", "--", "X")):
        if what not in tracks:
            continue
        vertex, direction = tracks[what]
        ru, rv = _ring(vertex, direction, R, H)
        ax.plot(
            ru,
            rv,
            color="k" if what == "true" else "C3",
            linestyle=style,
            lw=1.0,
            label=f"{what} Cherenkov ring",
            zorder=3,
        )
        eu, ev = _exit_point(vertex, direction, R, H)
        ax.plot(
            eu,
            ev,
            marker=marker,
            color="k" if what == "true" else "C3",
            markersize=9,
            linestyle="none",
            label=f"{what} direction on wall",
            zorder=4,
        )
    ax.set_aspect("equal")
    ax.set_xlabel("unrolled barrel R $\\phi$ / cap z [cm]")
    ax.set_ylabel("height y / folded caps [cm]")
    ax.grid(False)
    if tracks:
        ax.legend(loc="upper right", fontsize="x-small")


def figures(event: EventView, detector: Any) -> list[tuple[str, str, Any]]:
    """The unrolled tank coloured by charge and by time, and the detector's image-map view."""
    hit, charge, time = _per_pmt(event, detector.n_pmts)
    u, v = unroll(detector.pmt_positions, detector.radius, detector.half_height, detector.pmt_location)
    tracks = _tracks(event)
    title = _title(event)
    out = []
    extent = (2 * detector.half_height + 4 * detector.radius) / (2 * np.pi * detector.radius)
    fig, axes = plt.subplots(1, 2, figsize=(13.0, 5.5 * max(extent, 0.6) + 0.8), layout="constrained")
    positive = charge[charge > 0]
    qnorm = (
        LogNorm(max(positive.min(), 1e-3), max(positive.max(), 1e-3 * 1.01)) if len(positive) else Normalize()
    )
    _unrolled_panel(axes[0], detector, u, v, hit, charge, "charge per PMT [p.e.]", qnorm, "viridis", tracks)
    # Late dark-noise hits would squash the colour scale: it spans the 2-98% range of the hit times.
    tnorm = Normalize(*np.percentile(time, [2, 98])) if len(time) else Normalize()
    _unrolled_panel(
        axes[1], detector, u, v, hit, time, "first hit time [ns] (2-98% range)", tnorm, "plasma", tracks
    )
    axes[0].set_title(f"charge ({len(hit)} PMTs hit, {charge.sum():.0f} p.e.)")
    axes[1].set_title("time")
    fig.suptitle(title, fontsize="medium")
    out.append(("unrolled", f"Event {event.index}: unrolled tank, charge and time", fig))

    height, width = detector.image_shape
    image = np.bincount(
        detector.image_pixel[event.hits["hit_pmt"].astype(np.int64)],
        weights=np.asarray(event.hits["hit_charge"], np.float64),
        minlength=height * width,
    ).reshape(height, width)
    fig, axes = plt.subplots(1, 1, figsize=(6.4, 6.4 * height / width + 0.8), layout="constrained")
    occupied = np.zeros(height * width)
    occupied[detector.image_pixel] = 1.0  # pixels that hold a module: light grey when not hit
    axes.imshow(
        np.ma.masked_where(occupied == 0, occupied).reshape(height, width),
        cmap="Greys",
        vmin=0,
        vmax=8,
        interpolation="nearest",
    )
    shown = np.ma.masked_where(image <= 0, image)
    im = axes.imshow(
        shown,
        cmap="viridis",
        norm=LogNorm() if shown.count() else None,
        origin="upper",
        interpolation="nearest",
    )
    fig.colorbar(im, ax=axes, label="charge per module [p.e.]", shrink=0.8)
    axes.set_xlabel("image column [pixel]")
    axes.set_ylabel("image row [pixel]")
    axes.grid(False)
    axes.set_title(
        f"{detector.name} image map ({height} x {width}, {detector.pmts_per_module} PMT(s) per pixel summed)",
        fontsize="small",
    )
    fig.suptitle(title, fontsize="medium")
    out.append(("image", f"Event {event.index}: the detector image the CNN sees", fig))
    return out


def interactive(event: EventView, detector: Any):
    """Plotly 3D view: every PMT (grey), hit PMTs coloured by log10 charge (hover: PMT, charge, time), the
    true and predicted vertices with their directions to the wall."""
    import plotly.graph_objects as go

    hit, charge, time = _per_pmt(event, detector.n_pmts)
    pos = np.asarray(detector.pmt_positions, dtype=np.float64)
    fig = go.Figure()
    fig.add_trace(
        go.Scatter3d(
            x=pos[:, 0],
            y=pos[:, 2],
            z=pos[:, 1],
            mode="markers",
            marker={"size": 1.5, "color": "lightgrey", "opacity": 0.4},
            name="PMTs",
            hoverinfo="skip",
        )
    )
    fig.add_trace(
        go.Scatter3d(
            x=pos[hit, 0],
            y=pos[hit, 2],
            z=pos[hit, 1],
            mode="markers",
            name="hit PMTs",
            marker={
                "size": 3,
                "color": np.log10(np.maximum(charge, 1e-3)),
                "colorscale": "Viridis",
                "colorbar": {"title": "log10 charge [p.e.]"},
            },
            text=[f"PMT {k}: {q:.2f} p.e., {t:.1f} ns" for k, q, t in zip(hit, charge, time)],
            hoverinfo="text",
        )
    )
    for what, (vertex, direction) in _tracks(event).items():
        end = (
            vertex
            + towall(vertex[None], direction[None], detector.radius, detector.half_height)[0] * direction
        )
        color = "black" if what == "true" else "red"
        fig.add_trace(
            go.Scatter3d(
                x=[vertex[0], end[0]],
                y=[vertex[2], end[2]],
                z=[vertex[1], end[1]],
                mode="lines+markers",
                name=f"{what} vertex and direction",
                line={"color": color, "width": 5, "dash": "solid" if what == "true" else "dash"},
                marker={"size": [5, 2], "color": color},
            )
        )
    return layout_3d(fig, _title(event), ("x [cm]", "z [cm]", "y (tank axis) [cm]"))
