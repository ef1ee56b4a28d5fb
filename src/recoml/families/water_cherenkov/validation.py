"""Observables of toy water-Cherenkov events that compare with real detectors (docs/physics.md).

:func:`ring_observables` simulates single particles from one vertex with isotropic directions and measures,
with the true vertex, direction and vertex time (times relative to the trigger):

* ``hits``, ``charge`` (p.e.) and ``dark_hits`` per event;
* the hit-time residual ``r = t - t_vertex - |PMT - vertex| n_g / c``: its prompt peak (the mode, 0.5 ns
  bins), ``late_hit_fraction`` / ``late_charge_fraction`` = hits / charge with ``r`` more than 10 ns after
  the peak, and ``residual_core_width`` = FWHM / 2.355 of the peak (ns);
* the angle between the particle direction and (PMT - vertex) of the signal charge: ``ring_edge`` (deg),
  where the charge per degree first falls below half its maximum outside the peak,
  ``charge_beyond_50deg``, the fraction of the signal charge beyond 50 degrees, and
  ``prompt_charge_beyond_50deg``, the same over the prompt signal charge (not late): the ring's own light
  (multiple scattering, knock-on electrons, the shower's spread) without the scattered and reflected light
  that lands anywhere in the tank.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from recoml.errors import DataError
from recoml.families.water_cherenkov.detector import WCDetector
from recoml.families.water_cherenkov.particles import isotropic_directions
from recoml.families.water_cherenkov.readers import load_geometry, read_tube_table, to_detector_frame
from recoml.families.water_cherenkov.simulation import C_LIGHT, PhysicsConfig, simulate_particles
from recoml.families.water_cherenkov.wcsim_raw import primary_track, read_triggers

__all__ = ["OBSERVABLES", "raw_event_comparison", "ring_observables"]

OBSERVABLES = (
    "hits",
    "charge",
    "dark_hits",
    "late_hit_fraction",
    "late_charge_fraction",
    "residual_core_width",
    "ring_edge",
    "charge_beyond_50deg",
    "prompt_charge_beyond_50deg",
)
LATE_AFTER_PEAK = 10.0  # ns
PROMPT_WINDOW = 3.0  # ns, residuals kept in the second pass of the time-of-flight fit


def _half_max_crossing(hist: np.ndarray, centres: np.ndarray, start: int) -> float:
    """First position after ``start`` where ``hist`` falls below half of ``hist[start]`` (interpolated)."""
    half = 0.5 * hist[start]
    below = np.flatnonzero(hist[start:] < half)
    if not len(below):
        return float(centres[-1])
    j = start + int(below[0])
    x0, x1, y0, y1 = centres[j - 1], centres[j], hist[j - 1], hist[j]
    return float(x0 + (y0 - half) / (y0 - y1) * (x1 - x0)) if y0 != y1 else float(x1)


def ring_observables(
    detector: WCDetector,
    kind: str,
    energy: float,
    n_events: int,
    physics: PhysicsConfig | None = None,
    seed: int = 0,
    vertex: Sequence[float] = (0.0, 0.0, 0.0),
) -> dict[str, float]:
    """The observables of the module docstring for ``n_events`` ``kind`` particles of ``energy`` MeV."""
    physics = physics or PhysicsConfig()
    rng = np.random.default_rng(seed)
    v = np.tile(np.asarray(vertex, dtype=float), (n_events, 1))
    w = isotropic_directions(n_events, rng)
    hits = simulate_particles(
        detector, [kind] * n_events, np.full(n_events, float(energy)), v, w, rng, physics
    )
    offsets = np.append(hits["event_hits_index"], len(hits["hit_pmt"]))
    ev = np.repeat(np.arange(n_events), np.diff(offsets))
    pos = detector.pmt_positions[hits["hit_pmt"]].astype(np.float64)
    rel = pos - v[ev]
    dist = np.linalg.norm(rel, axis=1)
    q = hits["hit_charge"].astype(np.float64)
    signal = hits["hit_parent"] >= 0

    residual = hits["hit_time"] - hits["vertex_times"][ev] - dist * physics.group_index / C_LIGHT
    edges = np.arange(-30.0, 60.0 + 1e-9, 0.5)
    centres = 0.5 * (edges[1:] + edges[:-1])
    hist = np.histogram(residual, edges)[0].astype(float)
    top = int(np.argmax(hist))
    peak = centres[top]
    late = residual > peak + LATE_AFTER_PEAK
    lo = _half_max_crossing(hist[::-1], -centres[::-1], len(hist) - 1 - top)
    hi = _half_max_crossing(hist, centres, top)
    fwhm = hi + lo  # lo is the mirrored (negated) crossing

    angle = np.degrees(np.arccos(np.clip(np.sum(rel * w[ev], 1) / dist, -1.0, 1.0)))
    a_edges = np.arange(0.0, 180.0 + 1e-9, 1.0)
    a_centres = 0.5 * (a_edges[1:] + a_edges[:-1])
    a_hist = np.histogram(angle[signal], a_edges, weights=q[signal])[0]
    ring_edge = _half_max_crossing(a_hist, a_centres, int(np.argmax(a_hist)))
    prompt = signal & ~late
    return {
        "hits": len(q) / n_events,
        "charge": float(q.sum()) / n_events,
        "dark_hits": float((~signal).sum()) / n_events,
        "late_hit_fraction": float(late.mean()),
        "late_charge_fraction": float(q[late].sum() / q.sum()),
        "residual_core_width": float(fwhm / 2.355),
        "ring_edge": ring_edge,
        "charge_beyond_50deg": float(q[signal & (angle > 50.0)].sum() / q[signal].sum()),
        "prompt_charge_beyond_50deg": float(q[prompt & (angle > 50.0)].sum() / q[prompt].sum()),
    }


def tof_vertex_fit(
    pmt_positions: np.ndarray,
    times: np.ndarray,
    charges: np.ndarray,
    group_index: float = 1.38,
    bounds: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, float]:
    """Classical time-of-flight vertex fit of one event: ``(vertex (cm), vertex time (ns))`` minimising a
    robust (Cauchy, then soft-L1) sum of residuals ``t - t0 - |PMT - x| n_g / c``: over every hit from the
    best point of a coarse grid, then over the hits within 3 ns of that fit. ``bounds`` ``(low, high)``
    (cm, 3 each) keeps the vertex in a box, e.g. the tank's: a point-source fit of an extended track or
    shower otherwise drifts along it, out of the tank. The baseline a vertex network must beat."""
    from scipy.optimize import least_squares

    pos = np.asarray(pmt_positions, dtype=np.float64)
    t = np.asarray(times, dtype=np.float64)
    q = np.asarray(charges, dtype=np.float64)
    # Start: the best of a 5 x 5 x 5 grid over the tank (and the charge centroid), each with the mode
    # (2 ns bins) of its residuals as t0, by the number of hits within 3 ns; a local fit from one point
    # alone gets stuck metres away in a 70 m tank.
    lo, hi = pos.min(axis=0) * 0.8, pos.max(axis=0) * 0.8
    axes = [np.linspace(a, b, 5) for a, b in zip(lo, hi)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    grid = np.vstack([grid, 0.5 * np.average(pos, axis=0, weights=q)])
    best, start, t0 = -1, grid[-1], 0.0
    for point in grid:
        guess = t - np.linalg.norm(pos - point, axis=1) * group_index / C_LIGHT
        counts, edges = np.histogram(guess, np.arange(guess.min(), guess.max() + 2.0, 2.0))
        k = int(np.argmax(counts))
        inside = int(np.sum(np.abs(guess - edges[k] - 1.0) < PROMPT_WINDOW))
        if inside > best:
            best, start, t0 = inside, point, float(edges[k] + 1.0)

    def residual(p: np.ndarray, keep: np.ndarray) -> np.ndarray:
        return t[keep] - p[3] - np.linalg.norm(pos[keep] - p[:3], axis=1) * group_index / C_LIGHT

    box: tuple[float | np.ndarray, float | np.ndarray] = (-np.inf, np.inf)
    if bounds is not None:
        low, high = (np.asarray(b, dtype=np.float64) for b in bounds)
        box = (np.append(low, -np.inf), np.append(high, np.inf))
        start = np.clip(start, low, high)
    everything = np.ones(len(t), dtype=bool)
    fit = least_squares(
        residual, np.append(start, t0), loss="cauchy", f_scale=2.0, args=(everything,), bounds=box
    )
    # Second pass on the prompt hits only (scattered, reflected, dark and late-PMT hits left out).
    prompt = np.abs(residual(fit.x, everything)) < PROMPT_WINDOW
    if prompt.sum() >= 5:
        fit = least_squares(residual, fit.x, loss="soft_l1", f_scale=1.0, args=(prompt,), bounds=box)
    return fit.x[:3], float(fit.x[3])


#: PDG codes of the particles the toy simulates, by name.
_TOY_KIND = {22: "gamma", 11: "e-", -11: "e+", 13: "mu-", -13: "mu+"}


def raw_event_comparison(
    path: str | Path, n_toy: int = 40, seed: int = 0, physics: PhysicsConfig | None = None
) -> dict[str, dict[str, float]]:
    """The toy against a real raw WCSim event, on the file's own geometry: the file's first event's
    primary (a pi0 as its two decay photons, from their own tracks) simulated ``n_toy`` times with the
    same vertex, directions and energies. ``{"real": ..., "toy": ...}`` each with ``hits``, ``charge``
    (p.e.) and ``late_hit_fraction`` / ``late_charge_fraction`` (residual more than 10 ns after its peak;
    no vertex time is needed, so WCSim's trigger offset does not matter). The toy's are means over its
    events."""
    physics = physics or PhysicsConfig()
    detector = load_geometry(path)
    table = read_tube_table(path)  # the tubes as load_geometry orders them
    axis = table.file_axis
    trigger = read_triggers(path)[0][0]
    tracks = trigger.member("fTracks").columns
    digits = trigger.member("fCherenkovDigiHits").columns
    primary = primary_track(tracks, path, 0)
    if tracks["fIpnu"][primary] == 111:
        chosen = np.flatnonzero((tracks["fIpnu"] == 22) & (tracks["fParenttype"] == 111))
    else:
        chosen = np.array([primary])
    codes = tracks["fIpnu"][chosen].tolist()
    if any(c not in _TOY_KIND for c in codes):
        raise DataError(f"{path}: particles {codes} of its first event are not simulated by the toy")
    kinds = [_TOY_KIND[c] for c in codes]
    kinetic = (tracks["fE"][chosen] - tracks["fM"][chosen]).astype(np.float64)
    starts = to_detector_frame(tracks["fStart"][chosen], axis)
    directions = to_detector_frame(tracks["fDir"][chosen], axis)
    # the real event: digit tubes to the detector's PMTs, the primary's vertex
    vertex = to_detector_frame(np.asarray(trigger.member("fVtx"), dtype=np.float64), axis)
    row = {int(t): k for k, t in enumerate(table.sensor_ids[:, 0])}
    pmts = np.array([row[int(t)] for t in digits["fTubeId"]])
    real = _hit_summary(detector, pmts, digits["fT"], digits["fQ"], vertex, physics.group_index)

    rng = np.random.default_rng(seed)
    m = len(kinds)
    hits = simulate_particles(
        detector,
        kinds * n_toy,
        np.tile(kinetic, n_toy),
        np.tile(starts, (n_toy, 1)),
        np.tile(directions, (n_toy, 1)),
        rng,
        physics,
        event=np.repeat(np.arange(n_toy), m),
        n_events=n_toy,
    )
    offsets = np.append(hits["event_hits_index"], len(hits["hit_pmt"]))
    toy = [
        _hit_summary(
            detector,
            hits["hit_pmt"][a:b],
            hits["hit_time"][a:b],
            hits["hit_charge"][a:b],
            vertex,
            physics.group_index,
        )
        for a, b in zip(offsets[:-1], offsets[1:])
    ]
    return {"real": real, "toy": {k: float(np.mean([t[k] for t in toy])) for k in real}}


def _hit_summary(
    detector: WCDetector,
    pmts: np.ndarray,
    times: np.ndarray,
    charges: np.ndarray,
    vertex: np.ndarray,
    group_index: float,
) -> dict[str, float]:
    """Hits, charge and late fractions of one event (residuals from ``vertex``, relative to their peak)."""
    q = np.asarray(charges, dtype=np.float64)
    dist = np.linalg.norm(detector.pmt_positions[np.asarray(pmts)].astype(np.float64) - vertex, axis=1)
    residual = np.asarray(times, dtype=np.float64) - dist * group_index / C_LIGHT
    counts, edges = np.histogram(residual, np.arange(residual.min(), residual.max() + 1.0, 0.5))
    peak = edges[int(np.argmax(counts))] + 0.25
    late = residual > peak + LATE_AFTER_PEAK
    return {
        "hits": float(len(q)),
        "charge": float(q.sum()),
        "late_hit_fraction": float(late.mean()),
        "late_charge_fraction": float(q[late].sum() / q.sum()),
    }
