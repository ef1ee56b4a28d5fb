"""Track matching and tracking performance: efficiency, fake rate, duplicate rate, overall and binned.

A reconstructed track (at least ``min_track_hits`` hits) is compared with its *majority particle*, the
particle owning most of its hits (noise counts as a pseudo-particle that matches nothing; ties prefer real
particles, then the smaller id). With ``purity`` = shared hits / track hits and ``completeness`` = shared hits
/ particle hits in the event:

* **double majority** (Exa.TrkX, acorn ``two_way``): matched when ``purity > 0.5`` and ``completeness > 0.5``;
* **ATLAS** (reconstructed purity): matched when ``purity >= fraction`` (default 0.5), whatever the
  completeness, so a short clean piece of a long track counts (and shows up as a duplicate).

*Target* particles are chosen by a :class:`TargetSelection` (acorn / GNN4ITk's fiducial cuts): pT >
``pt_min``, at least ``min_hits`` hits, and optionally |eta| < ``eta_max``, primary only (TrackML's
particle-id encoding: generation bits 0), production radius below ``max_production_radius`` and particle
types left out (``exclude_pdg``, e.g. electrons). The headline rates follow acorn's definitions
(docs/evaluation.md):

* efficiency = matched target particles / target particles;
* fake rate = unmatched tracks / all reconstructed tracks (``fake_rate_reco_pt_above_min`` is the ATLAS-style
  variant over tracks with estimated pT > ``pt_min`` only);
* duplicate rate = (matched tracks whose particle is a target - reconstructed target particles) /
  reconstructed target particles (``duplicate_rate_over_matched_tracks`` divides by matched tracks instead).

Particle pT and eta come from the truth at the hits (mean over the particle's hits), so no particle table is
needed; track pT and eta are estimated from the hits (a circle through the innermost, middle and outermost
hit; the direction from the innermost to the outermost hit).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from recoml.errors import ConfigError
from recoml.families.tracking.detector import K_GEV_PER_T_MM
from recoml.metrics.physics import binned_efficiency

__all__ = [
    "MATCHING_STYLES",
    "TargetSelection",
    "TrackMatch",
    "is_primary",
    "match_tracks",
    "tracking_metrics",
]

MATCHING_STYLES = ("double_majority", "atlas")
#: From 0 GeV, so the efficiency turn-on below the target pT cut is visible.
DEFAULT_PT_BINS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0)
DEFAULT_ETA_BINS = tuple(np.round(np.linspace(-4.0, 4.0, 17), 3))
#: TrackML's particle_id bit field of the generation (trackml-library ``utils.decode_particle_id``).
_GENERATION_MASK, _GENERATION_SHIFT = 0x0000000FFF000000, 24


def is_primary(particle_id: np.ndarray) -> np.ndarray:
    """Primary particles in TrackML's id encoding (generation 0); small toy ids (< 2**24) are primaries."""
    pid = np.asarray(particle_id, dtype=np.int64).astype(np.uint64)
    return ((pid & np.uint64(_GENERATION_MASK)) >> np.uint64(_GENERATION_SHIFT)) == 0


@dataclass(frozen=True)
class TargetSelection:
    """Which particles efficiencies are quoted for (acorn / GNN4ITk fiducial selection); None = no cut."""

    pt_min: float = 1.0
    min_hits: int = 3
    eta_max: float | None = None
    primary_only: bool = False
    max_production_radius: float | None = None  # mm, transverse
    exclude_pdg: tuple[int, ...] = ()  # |PDG code|, e.g. (11,) leaves out electrons

    def __post_init__(self) -> None:
        if self.min_hits < 1:
            raise ConfigError(f"target selection: min_hits must be >= 1, got {self.min_hits}")
        if self.eta_max is not None and self.eta_max <= 0:
            raise ConfigError(f"target selection: eta_max must be > 0, got {self.eta_max}")

    @classmethod
    def from_options(cls, options: dict[str, Any], pt_min: float, min_hits: int) -> TargetSelection:
        """From evaluation options (``eta_max``, ``primary_only``, ``max_production_radius``,
        ``exclude_pdg``), with the task's ``pt_min`` and ``min_hits``."""
        radius = options.get("max_production_radius")
        eta_max = options.get("eta_max")
        return cls(
            pt_min=float(options.get("pt_min", pt_min)),
            min_hits=int(options.get("min_particle_hits", min_hits)),
            eta_max=None if eta_max is None else float(eta_max),
            primary_only=bool(options.get("primary_only", False)),
            max_production_radius=None if radius is None else float(radius),
            exclude_pdg=tuple(int(p) for p in options.get("exclude_pdg") or ()),
        )

    def select(
        self,
        pt: np.ndarray,
        eta: np.ndarray,
        nhits: np.ndarray,
        particle_id: np.ndarray,
        production_radius: np.ndarray | None = None,
        pdg: np.ndarray | None = None,
    ) -> np.ndarray:
        """Target flag per particle; a cut on truth that is not given is refused, not skipped."""
        ok = (pt > self.pt_min) & (nhits >= self.min_hits)
        if self.eta_max is not None:
            ok &= np.abs(eta) < self.eta_max
        if self.primary_only:
            ok &= is_primary(particle_id)
        if self.max_production_radius is not None:
            if production_radius is None:
                raise ConfigError(
                    "target selection by production radius needs the particles' production vertices "
                    "(particle_vx/vy); the data has none"
                )
            ok &= production_radius < self.max_production_radius
        if self.exclude_pdg:
            if pdg is None:
                raise ConfigError("target selection by particle type needs particle_type; the data has none")
            ok &= ~np.isin(np.abs(pdg), np.abs(np.asarray(self.exclude_pdg)))
        return ok


@dataclass
class TrackMatch:
    """One row per particle (``particle_*``) and per reconstructed track (``track_*``) of a set of events."""

    particle_event: np.ndarray
    particle_id: np.ndarray
    particle_pt: np.ndarray
    particle_eta: np.ndarray
    particle_nhits: np.ndarray
    particle_target: np.ndarray
    particle_matched_double_majority: np.ndarray
    particle_matched_atlas: np.ndarray
    track_event: np.ndarray
    track_label: np.ndarray
    track_nhits: np.ndarray
    track_major: np.ndarray
    track_purity: np.ndarray
    track_completeness: np.ndarray
    track_matched_double_majority: np.ndarray
    track_matched_atlas: np.ndarray
    track_pt: np.ndarray
    track_eta: np.ndarray
    track_major_pt: np.ndarray
    track_major_eta: np.ndarray
    track_major_target: np.ndarray

    @classmethod
    def concat(cls, parts: list[TrackMatch]) -> TrackMatch:
        if not parts:
            return cls(
                **{
                    f.name: np.zeros(0, dtype=bool if f.name.endswith("_target") else float)
                    for f in fields(cls)
                }
            )
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)})

    @property
    def n_tracks(self) -> int:
        return len(self.track_label)

    def matched(self, style: str, what: str = "particle") -> np.ndarray:
        if style not in MATCHING_STYLES:
            raise ConfigError(f"matching style must be one of {MATCHING_STYLES}, got '{style}'")
        return getattr(self, f"{what}_matched_{style}")


def _group(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique rows of ``keys (N, K)``, the inverse index and counts."""
    if len(keys) == 0:
        return keys, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    uniq, inverse, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    return uniq, inverse.reshape(-1), counts


def match_tracks(
    event: np.ndarray,
    particle_id: np.ndarray,
    track: np.ndarray,
    hit_pt: np.ndarray,
    hit_eta: np.ndarray,
    pos: np.ndarray | None = None,
    *,
    pt_min: float = 1.0,
    min_particle_hits: int = 3,
    min_track_hits: int = 3,
    fraction: float = 0.5,
    bfield: float = 2.0,
    selection: TargetSelection | None = None,
    hit_production_radius: np.ndarray | None = None,
    hit_pdg: np.ndarray | None = None,
) -> TrackMatch:
    """Match tracks to particles in every event. Arrays are per hit: ``track`` -1 for hits in no track,
    ``particle_id`` 0 for noise, ``hit_pt``/``hit_eta`` the true pT/eta of the hit's particle, ``pos`` (N, 3)
    the hit positions (mm) for track-parameter estimates, ``hit_production_radius``/``hit_pdg`` the
    production radius and type of the hit's particle (only needed when ``selection`` cuts on them).
    ``selection`` defaults to ``TargetSelection(pt_min, min_particle_hits)``."""
    selection = selection or TargetSelection(pt_min=pt_min, min_hits=min_particle_hits)
    if not 0 < fraction <= 1:
        raise ConfigError(f"matching fraction must be in (0, 1], got {fraction}")
    event = np.asarray(event, dtype=np.int64)
    pid = np.asarray(particle_id, dtype=np.int64)
    track = np.asarray(track, dtype=np.int64)
    n = len(event)
    if not (len(pid) == len(track) == len(hit_pt) == len(hit_eta) == n):
        raise ConfigError("match_tracks: every per-hit array must have the same length")

    # Particles.
    real = pid != 0
    pkeys, pinv, pcount = _group(np.stack([event[real], pid[real]], 1))
    p_pt = np.bincount(pinv, weights=np.asarray(hit_pt, float)[real], minlength=len(pkeys)) / np.maximum(
        pcount, 1
    )
    p_eta = np.bincount(pinv, weights=np.asarray(hit_eta, float)[real], minlength=len(pkeys)) / np.maximum(
        pcount, 1
    )
    first_hit = (
        np.flatnonzero(real)[np.unique(pinv, return_index=True)[1]] if len(pkeys) else np.zeros(0, int)
    )

    def per_particle(values: np.ndarray | None) -> np.ndarray | None:
        return None if values is None else np.asarray(values)[first_hit]

    p_target = selection.select(
        p_pt, p_eta, pcount, pkeys[:, 1], per_particle(hit_production_radius), per_particle(hit_pdg)
    )

    # Tracks (big enough), and their (track, particle) hit counts.
    in_track = track >= 0
    tkeys, tinv, tcount = _group(np.stack([event[in_track], track[in_track]], 1))
    big = tcount >= min_track_hits
    hits_idx = np.flatnonzero(in_track)[big[tinv]]
    tkeys, tcount = tkeys[big], tcount[big]
    t_index = np.full(len(big), -1)
    t_index[np.flatnonzero(big)] = np.arange(int(big.sum()))
    t_of_hit = t_index[tinv[big[tinv]]]
    pair_keys, pair_inv, pair_count = _group(np.stack([t_of_hit, pid[hits_idx]], 1))
    pair_track, pair_pid = pair_keys[:, 0], pair_keys[:, 1]
    # Majority: most hits, then a real particle before noise, then the smaller id.
    order = np.lexsort((pair_pid, pair_pid == 0, -pair_count, pair_track))
    first = np.ones(len(order), dtype=bool)
    first[1:] = pair_track[order][1:] != pair_track[order][:-1]
    best = order[first]
    major = pair_pid[best]
    shared = pair_count[best]
    n_tracks = len(tkeys)
    purity = shared / np.maximum(tcount, 1)
    # Completeness: shared hits over the majority particle's hits in the event (row found through a hit).
    p_row_of_hit = np.full(n, -1, dtype=np.int64)
    p_row_of_hit[np.flatnonzero(real)] = pinv
    representative = np.zeros(len(pair_keys), dtype=np.int64)
    representative[pair_inv] = hits_idx
    major_row = p_row_of_hit[representative[best]] if n_tracks else np.zeros(0, dtype=np.int64)
    t_event = tkeys[:, 0]
    has_major = major_row >= 0
    purity = np.where(has_major, purity, 0.0)  # a noise-majority track has no particle to be pure in
    completeness = (
        np.where(has_major, shared / np.maximum(pcount[np.maximum(major_row, 0)], 1), 0.0)
        if len(pkeys)
        else np.zeros(n_tracks)
    )
    dm = has_major & (purity > 0.5) & (completeness > 0.5)
    atlas = has_major & (purity >= fraction)

    def matched_particles(track_ok: np.ndarray) -> np.ndarray:
        counts = np.bincount(major_row[track_ok], minlength=len(pkeys)) if len(pkeys) else np.zeros(0, int)
        return counts

    t_pt, t_eta = _track_parameters(pos, hits_idx, t_of_hit, n_tracks, bfield)
    safe_row = np.maximum(major_row, 0)
    return TrackMatch(
        particle_event=pkeys[:, 0],
        particle_id=pkeys[:, 1],
        particle_pt=p_pt,
        particle_eta=p_eta,
        particle_nhits=pcount,
        particle_target=p_target,
        particle_matched_double_majority=matched_particles(dm),
        particle_matched_atlas=matched_particles(atlas),
        track_event=t_event,
        track_label=tkeys[:, 1],
        track_nhits=tcount,
        track_major=major,
        track_purity=purity,
        track_completeness=completeness,
        track_matched_double_majority=dm,
        track_matched_atlas=atlas,
        track_pt=t_pt,
        track_eta=t_eta,
        track_major_pt=np.where(has_major, p_pt[safe_row] if len(pkeys) else 0.0, np.nan),
        track_major_eta=np.where(has_major, p_eta[safe_row] if len(pkeys) else 0.0, np.nan),
        track_major_target=has_major & (p_target[safe_row] if len(pkeys) else False),
    )


def _track_parameters(
    pos: np.ndarray | None, hits_idx: np.ndarray, t_of_hit: np.ndarray, n_tracks: int, bfield: float
) -> tuple[np.ndarray, np.ndarray]:
    """Estimated pT (circle through innermost, middle, outermost hit) and eta (inner -> outer direction)."""
    if pos is None or n_tracks == 0:
        return np.full(n_tracks, np.nan), np.full(n_tracks, np.nan)
    p = np.asarray(pos, dtype=np.float64)[hits_idx]
    r = np.hypot(p[:, 0], p[:, 1])
    order = np.lexsort((r, t_of_hit))
    counts = np.bincount(t_of_hit, minlength=n_tracks)
    start = np.cumsum(counts) - counts
    a, m, b = p[order[start]], p[order[start + counts // 2]], p[order[start + counts - 1]]
    ab = np.hypot(*(b - a)[:, :2].T)
    am = np.hypot(*(m - a)[:, :2].T)
    mb = np.hypot(*(b - m)[:, :2].T)
    cross = np.abs((m - a)[:, 0] * (b - a)[:, 1] - (m - a)[:, 1] * (b - a)[:, 0])
    with np.errstate(divide="ignore", invalid="ignore"):
        radius = ab * am * mb / (2 * cross)
    pt = np.minimum(np.nan_to_num(K_GEV_PER_T_MM * bfield * radius, nan=1e3, posinf=1e3), 1e3)
    dr = np.hypot(b[:, 0], b[:, 1]) - np.hypot(a[:, 0], a[:, 1])
    eta = np.arcsinh((b[:, 2] - a[:, 2]) / np.where(np.abs(dr) < 1e-6, 1e-6, dr))
    return pt, eta


def _ratio(num: float, den: float) -> float:
    return float(num) / float(den) if den else 0.0


def _binned(values: np.ndarray, passed: np.ndarray, edges: np.ndarray) -> dict[str, list[float]]:
    """Fraction passing per bin with the one interval definition of
    :func:`recoml.metrics.physics.binned_efficiency` (Wilson 68.3%; NaN where a bin is empty)."""
    b = binned_efficiency(values, passed, edges)
    return {
        "edges": [float(e) for e in edges],
        "value": b["efficiency"].tolist(),
        "low": b["low"].tolist(),
        "high": b["high"].tolist(),
        "n": b["count"].tolist(),
        "passed": b["passed"].tolist(),
    }


def tracking_metrics(
    match: TrackMatch,
    pt_min: float = 1.0,
    pt_bins: tuple[float, ...] = DEFAULT_PT_BINS,
    eta_bins: tuple[float, ...] = DEFAULT_ETA_BINS,
) -> dict[str, Any]:
    """Efficiency, fake and duplicate rates for both matching styles, overall and vs pT and eta.

    Every rate is 0 when its denominator is (no targets, no tracks): an event with no edges passing the cuts
    gives efficiency 0, not an error.
    """
    out: dict[str, Any] = {
        "n_events": int(len(np.unique(np.concatenate([match.particle_event, match.track_event])))),
        "n_particles": int(len(match.particle_id)),
        "n_target_particles": int(match.particle_target.sum()),
        "n_tracks": match.n_tracks,
        "n_tracks_above_pt_min": int((match.track_pt > pt_min).sum()),
        "pt_min": pt_min,
    }
    pt_edges, eta_edges = np.asarray(pt_bins, float), np.asarray(eta_bins, float)
    target = match.particle_target
    for style in MATCHING_STYLES:
        p_matched = match.matched(style) > 0
        t_matched = match.matched(style, "track")
        n_matched_tracks = int(t_matched.sum())
        distinct = len(
            np.unique(np.stack([match.track_event[t_matched], match.track_major[t_matched]], 1), axis=0)
        )
        # Duplicates: matched tracks beyond the first for their particle.
        dup_track = np.zeros(match.n_tracks, dtype=bool)
        if n_matched_tracks:
            idx = np.flatnonzero(t_matched)
            keys = np.stack([match.track_event[idx], match.track_major[idx]], 1)
            _, first = np.unique(keys, axis=0, return_index=True)
            dup_track[idx] = True
            dup_track[idx[first]] = False
        eta_sel = target  # efficiency vs eta: targets (pT cut applied)
        high = match.track_pt > pt_min
        # acorn: duplicates are matched tracks of target particles beyond one per reconstructed target.
        n_reco_targets = int((p_matched & target).sum())
        on_target = t_matched & match.track_major_target
        out[style] = {
            "efficiency": _ratio(n_reco_targets, target.sum()),
            "efficiency_all_particles": _ratio(
                (p_matched & (match.particle_nhits >= 3)).sum(), (match.particle_nhits >= 3).sum()
            ),
            "fake_rate": _ratio(match.n_tracks - n_matched_tracks, match.n_tracks),
            "fake_rate_reco_pt_above_min": _ratio((high & ~t_matched).sum(), high.sum()),
            "duplicate_rate": _ratio(int(on_target.sum()) - n_reco_targets, n_reco_targets),
            "duplicate_rate_over_matched_tracks": _ratio(n_matched_tracks - distinct, n_matched_tracks),
            "efficiency_vs_pt": _binned(
                match.particle_pt[match.particle_nhits >= 3], p_matched[match.particle_nhits >= 3], pt_edges
            ),
            "efficiency_vs_eta": _binned(match.particle_eta[eta_sel], p_matched[eta_sel], eta_edges),
            "fake_rate_vs_eta": _binned(match.track_eta, ~t_matched, eta_edges),
            "fake_rate_vs_pt": _binned(match.track_pt, ~t_matched, pt_edges),
            "duplicate_rate_vs_eta": _binned(
                match.track_major_eta[t_matched], dup_track[t_matched], eta_edges
            ),
            "duplicate_rate_vs_pt": _binned(match.track_major_pt[t_matched], dup_track[t_matched], pt_edges),
        }
    return out
