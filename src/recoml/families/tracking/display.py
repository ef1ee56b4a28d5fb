"""Tracker event displays (mm, solenoid axis z): hits in x-y and r-z over the detector layers, the
candidate graph's edges coloured by their score, reconstructed tracks next to the true particles, and a
3D view.

Hits come from the predictions file when the event has one (its ``hits`` objects are what ``edge_src`` /
``edge_dst`` index), else from the store. Tracks are built from the edges above the task's score cut
(its ``threshold``, 0.5 by default) by connected components with at least 3 hits, as ``recoml.evaluate``
does by default; a track is *matched* when its majority particle owns more than half of its hits and
more than half of that particle's hits (double majority, :mod:`recoml.families.tracking.matching`).
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.collections import LineCollection
from matplotlib.colors import Normalize

from recoml.errors import DataError
from recoml.families.tracking.building import build_tracks_cc
from recoml.plotting.events import EventView, layout_3d

__all__ = ["figures", "interactive", "reconstructed_tracks"]

_XYZ = ("hit_x", "hit_y", "hit_z")


def _hits(event: EventView) -> dict[str, np.ndarray]:
    hits = event.objects.get("hits") or event.hits
    missing = [f for f in _XYZ if f not in hits]
    if missing:
        raise DataError(
            f"event {event.index}: hit fields {missing} are missing; a tracker display needs {list(_XYZ)}"
        )
    return hits


def _score_cut(event: EventView) -> float:
    for section in event.sections:
        if section.get("kind") == "edge_classification" and section.get("threshold") is not None:
            return float(section["threshold"])
    return 0.5


def reconstructed_tracks(event: EventView, min_hits: int = 3) -> np.ndarray | None:
    """Track label per hit (-1: in no track) from the event's scored edges, or None without edges."""
    edges = event.objects.get("edges")
    if not edges or "edge_score" not in edges:
        return None
    n = len(_hits(event)["hit_x"])
    index = torch.as_tensor(np.stack([edges["edge_src"], edges["edge_dst"]]).astype(np.int64))
    labels = build_tracks_cc(index, torch.as_tensor(edges["edge_score"]), n, _score_cut(event), min_hits)
    return labels.numpy()


def _barrels(ax_xy, detector: Any) -> None:
    """Barrel layers as circles in x-y."""
    if detector is None:
        return
    t = np.linspace(0, 2 * np.pi, 200)
    for r in detector.layer_radius[~detector.is_disk]:
        ax_xy.plot(r * np.cos(t), r * np.sin(t), color="0.85", lw=0.5, zorder=0)


def _layers(ax_xy, ax_rz, detector: Any) -> None:
    """Barrel layers as circles (x-y); every layer as a line in r-z."""
    if detector is None:
        return
    _barrels(ax_xy, detector)
    for r_min, r_max, z_min, z_max in zip(
        detector.layer_r_min, detector.layer_r_max, detector.layer_z_min, detector.layer_z_max
    ):
        ax_rz.plot([z_min, z_max], [r_min, r_max], color="0.85", lw=0.8, zorder=0)


def _axes(title: str, detector: Any):
    fig, (ax_xy, ax_rz) = plt.subplots(
        1, 2, figsize=(13.0, 5.6), layout="constrained", gridspec_kw={"width_ratios": [1, 1.6]}
    )
    _layers(ax_xy, ax_rz, detector)
    ax_xy.set_xlabel("x [mm]")
    ax_xy.set_ylabel("y [mm]")
    ax_xy.set_aspect("equal")
    ax_rz.set_xlabel("z [mm]")
    ax_rz.set_ylabel("r [mm]")
    fig.suptitle(title, fontsize="medium")
    return fig, ax_xy, ax_rz


def _particle_colours(pid: np.ndarray) -> np.ndarray:
    """A stable colour per particle id (tab20), grey for noise (id 0)."""
    cmap = plt.get_cmap("tab20")
    colours = cmap((np.asarray(pid, dtype=np.int64) * 7919) % 20)
    colours[np.asarray(pid) == 0] = (0.6, 0.6, 0.6, 1.0)
    return colours


def _title(event: EventView, hits: dict[str, np.ndarray]) -> str:
    pid = hits.get("hit_particle_id")
    parts = [f"event {event.index}: {len(hits['hit_x'])} hits"]
    if pid is not None:
        parts.append(f"{len(np.unique(pid[pid != 0]))} particles, {int(np.sum(pid == 0))} noise hits")
    title = ", ".join(parts)
    return f"{title}\n{event.caption}" if event.caption else title


def _segments(a: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.stack([np.stack([x[a], y[a]], 1), np.stack([x[b], y[b]], 1)], 1)


def figures(event: EventView, detector: Any) -> list[tuple[str, str, Any]]:
    """Hits (coloured by true particle); with predictions also edges by score and tracks vs truth."""
    hits = _hits(event)
    x, y, z = (np.asarray(hits[f], dtype=np.float64) for f in _XYZ)
    r = np.hypot(x, y)
    pid = np.asarray(hits.get("hit_particle_id", np.zeros(len(x))), dtype=np.int64)
    title = _title(event, hits)
    out = []

    fig, ax_xy, ax_rz = _axes(title, detector)
    colours = _particle_colours(pid)
    for ax, (a, b) in ((ax_xy, (x, y)), (ax_rz, (z, r))):
        ax.scatter(a, b, s=4, c=colours, linewidths=0)
    ax_xy.set_title("hits, coloured by true particle (noise grey)")
    out.append(("hits", f"Event {event.index}: hits in x-y and r-z", fig))

    edges = event.objects.get("edges")
    if edges and "edge_score" in edges:
        src, dst = np.asarray(edges["edge_src"], np.int64), np.asarray(edges["edge_dst"], np.int64)
        score = np.asarray(edges["edge_score"], dtype=np.float64)
        cut = _score_cut(event)
        order = np.argsort(score)  # high scores drawn on top
        fig, ax_xy, ax_rz = _axes(title, detector)
        norm = Normalize(0.0, 1.0)
        for ax, (a, b) in ((ax_xy, (x, y)), (ax_rz, (z, r))):
            ax.scatter(a, b, s=2, color="0.7", linewidths=0)
            # matplotlib documents (N, 2, 2) arrays of segments; its stub asks for a Sequence.
            lines = LineCollection(
                _segments(src[order], dst[order], a, b),  # type: ignore[arg-type]
                array=score[order],
                cmap="viridis",
                norm=norm,
                linewidths=0.6,
            )
            ax.add_collection(lines)
        fig.colorbar(lines, ax=ax_rz, label="edge score")
        ax_xy.set_title(f"{len(score)} candidate edges, {int(np.sum(score > cut))} above the cut {cut:g}")
        out.append(("edges", f"Event {event.index}: graph edges coloured by score", fig))

        labels = reconstructed_tracks(event)
        assert labels is not None  # the event has scored edges (checked above)
        fig, axes = plt.subplots(1, 2, figsize=(13.0, 6.0), layout="constrained")
        for ax in axes:
            _barrels(ax, detector)
            ax.set_xlabel("x [mm]")
            ax.set_ylabel("y [mm]")
            ax.set_aspect("equal")
            ax.scatter(x, y, s=2, color="0.75", linewidths=0)
        n_true = _truth_lines(axes[0], x, y, r, pid)
        axes[0].set_title(f"truth: {n_true} particles with 2+ hits")
        n_tracks, n_fake = _reco_lines(axes[1], x, y, r, pid, labels)
        axes[1].set_title(f"reconstructed: {n_tracks} tracks, {n_fake} not matched (red, dashed)")
        fig.suptitle(title, fontsize="medium")
        out.append(("tracks", f"Event {event.index}: reconstructed tracks vs truth (x-y)", fig))
    return out


def _truth_lines(ax, x, y, r, pid) -> int:
    """Each true particle's hits joined in order of r (x-y); returns the number drawn."""
    n = 0
    for p in np.unique(pid[pid != 0]):
        sel = np.flatnonzero(pid == p)
        if len(sel) < 2:
            continue
        sel = sel[np.argsort(r[sel])]
        ax.plot(x[sel], y[sel], color=_particle_colours(np.array([p]))[0], lw=0.8)
        n += 1
    return n


def _reco_lines(ax, x, y, r, pid, labels: np.ndarray) -> tuple[int, int]:
    """Each track's hits joined in order of r: coloured by its majority particle when double-majority
    matched, red dashed otherwise. Returns (tracks, unmatched tracks)."""
    n_fake = 0
    tracks = np.unique(labels[labels >= 0])
    for t in tracks:
        sel = np.flatnonzero(labels == t)
        sel = sel[np.argsort(r[sel])]
        ids, counts = np.unique(pid[sel], return_counts=True)
        major = ids[np.argmax(counts)]
        shared = counts.max()
        matched = major != 0 and shared / len(sel) > 0.5 and shared / np.sum(pid == major) > 0.5
        n_fake += not matched
        colour = _particle_colours(np.array([major]))[0] if matched else "red"
        ax.plot(x[sel], y[sel], color=colour, lw=1.0, linestyle="-" if matched else "--")
    return len(tracks), n_fake


def interactive(event: EventView, detector: Any):
    """Plotly 3D view: hits coloured by true particle (hover: particle id, layer), reconstructed tracks as
    lines when the event has scored edges."""
    import plotly.graph_objects as go

    hits = _hits(event)
    x, y, z = (np.asarray(hits[f], dtype=np.float64) for f in _XYZ)
    pid = np.asarray(hits.get("hit_particle_id", np.zeros(len(x))), dtype=np.int64)
    hue = [(int(p) * 137) % 360 for p in pid]  # Python ints: TrackML ids times 137 overflow int64
    fig = go.Figure()
    fig.add_trace(
        go.Scatter3d(
            x=z,
            y=x,
            z=y,
            mode="markers",
            name="hits",
            marker={
                "size": 2,
                "color": ["rgb(150,150,150)" if p == 0 else f"hsl({h},70%,45%)" for p, h in zip(pid, hue)],
            },
            text=[f"hit {i}: particle {p}" for i, p in enumerate(pid)],
            hoverinfo="text",
        )
    )
    labels = reconstructed_tracks(event)
    if labels is not None:
        r = np.hypot(x, y)
        for t in np.unique(labels[labels >= 0]):
            sel = np.flatnonzero(labels == t)
            sel = sel[np.argsort(r[sel])]
            fig.add_trace(
                go.Scatter3d(
                    x=z[sel],
                    y=x[sel],
                    z=y[sel],
                    mode="lines",
                    line={"width": 3},
                    name=f"track {t}",
                    showlegend=False,
                )
            )
    return layout_3d(fig, _title(event, hits), ("z [mm]", "x [mm]", "y [mm]"))
