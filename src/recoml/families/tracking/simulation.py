"""Toy tracking events: charged particles on helices in a solenoid, hits where they cross the layers.

Every particle of an event is propagated at once (numpy arrays of shape (particles, layers)): the
intersection of a helix with a cylinder or a plane is solved exactly, so the hits lie on the true circle
of radius ``pT / (0.3 B)`` up to the smearing. Only the outgoing half-turn is followed (up to the point of
largest transverse distance from the beam): loopers do not come back, there is no energy loss. That keeps
the truth simple (hits of a particle ordered by distance from the beam line) while graph construction,
edge classification and track building see realistic occupancies, noise and TrackML-like geometry.

On top of the helix (issue 13, to look like the real TrackML event): multiple scattering in every layer
crossed (Highland kinks of ``theta0 = 13.6 MeV / (beta p) sqrt(x/X0) (1 + 0.038 ln(x/X0))`` in two
planes, PDG "Passage of particles through matter", displacing every later hit by ``kink x path length``),
double hits where overlapping modules are both crossed (a second hit of the same particle on the same
layer, a few mm further along the track; TrackML: ~24 % of particle hits are such extra hits), noise
at TrackML's ~15 % of all hits, and secondaries from hadronic (nuclear) interactions in the layers'
material: a particle crossing a layer of ``x/X0`` radiation lengths interacts with probability
``x / lambda_I`` (silicon ``lambda_I / X0 = 46.52 cm / 9.37 cm``, PDG "Atomic and nuclear properties"),
ends there, and gives a few low-pT charged secondaries produced on that layer (TrackML: about a fifth of
the particles are secondaries, Amrouche et al. 2019, arXiv:1904.06778; the real event in tests/data:
21.5 %, median pT 0.2 GeV). Secondaries carry TrackML's particle-id encoding (generation 1, their
parent's id as primary), so the matching's ``primary_only`` and production-radius selections apply.

Event ``e`` draws from ``numpy.random.default_rng([seed, e])``: a sample is the same whatever the chunking
or the number of workers, and any event can be regenerated alone.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from recoml.data.simulated import write_simulation
from recoml.errors import ConfigError
from recoml.families.tracking.detector import K_GEV_PER_T_MM, TrackerDetector

__all__ = [
    "HelixHits",
    "TrackerSimConfig",
    "highland",
    "propagate",
    "simulate_tracker",
    "simulate_tracker_event",
    "simulate_tracker_to_store",
]

log = logging.getLogger(__name__)

TWO_PI = 2.0 * math.pi
#: Nuclear interaction length over radiation length of silicon (46.52 cm / 9.370 cm; PDG, "Atomic and
#: nuclear properties of materials").
LAMBDA_OVER_X0_SILICON = 46.52 / 9.370
#: TrackML's particle_id bit fields (trackml-library ``utils.decode_particle_id``): primary id, generation,
#: secondary id.
PRIMARY_SHIFT, GENERATION_SHIFT, SECONDARY_SHIFT = 36, 24, 12


@dataclass
class TrackerSimConfig:
    """What a toy tracking event looks like (``tracker:`` block of ``recoml/conf/simulate.yaml``).

    ``n_particles`` charged particles per event (Poisson around it with ``poisson_multiplicity``);
    pT (GeV) from ``dN/dpT ~ pT^-pt_power`` on ``pt_range`` (``pt_power=1``: flat in log pT); pseudorapidity
    flat on ``eta_range``; azimuth flat; charge +-1; vertex Gaussian with ``vertex_sigma`` (x, y, z; mm).
    Each crossing gives a hit with probability ``hit_efficiency``, smeared by the layer resolution times
    ``resolution_scale``; noise hits, uniform on the layers' surfaces, make up ``noise_fraction`` of all hits
    (TrackML: ~15 %). Every layer is ``layer_x0`` radiation lengths thick (multiple scattering; 0: none);
    a fraction ``double_hit_fraction`` of the particle hits are second hits on an overlapping module
    (at most 0.5: one per crossing), ``overlap_distance`` mm further out along the track. A primary
    crossing a layer interacts there with probability ``layer_x0 / lambda_over_x0`` (hadronic interaction
    length in radiation lengths; 0: no secondaries) and stops; the interaction gives Poisson
    ``secondary_multiplicity`` charged secondaries (at least one) from that point, pT ``secondary_pt[0]``
    plus an exponential of mean ``secondary_pt[1]`` (GeV), direction the parent's smeared by
    ``secondary_spread`` (rad in phi, units of eta).
    """

    n_particles: int = 1000
    poisson_multiplicity: bool = False
    pt_range: tuple[float, float] = (0.4, 50.0)
    pt_power: float = 3.0
    eta_range: tuple[float, float] = (-4.0, 4.0)
    vertex_sigma: tuple[float, float, float] = (0.015, 0.015, 55.0)
    hit_efficiency: float = 1.0
    resolution_scale: float = 1.0
    noise_fraction: float = 0.15
    layer_x0: float = 0.02
    double_hit_fraction: float = 0.24
    overlap_distance: float = 4.0
    lambda_over_x0: float = LAMBDA_OVER_X0_SILICON
    secondary_multiplicity: float = 6.0
    secondary_pt: tuple[float, float] = (0.1, 0.12)
    secondary_spread: float = 0.5

    def __post_init__(self) -> None:
        self.pt_range = tuple(float(v) for v in self.pt_range)  # type: ignore[assignment]
        self.eta_range = tuple(float(v) for v in self.eta_range)  # type: ignore[assignment]
        self.vertex_sigma = tuple(float(v) for v in self.vertex_sigma)  # type: ignore[assignment]
        self.secondary_pt = tuple(float(v) for v in self.secondary_pt)  # type: ignore[assignment]
        if self.n_particles < 0:
            raise ConfigError(f"tracker.n_particles must be >= 0, got {self.n_particles}")
        lo, hi = self.pt_range
        if not 0 < lo <= hi:
            raise ConfigError(
                f"tracker.pt_range must satisfy 0 < low <= high (GeV), got {list(self.pt_range)}"
            )
        if self.eta_range[0] > self.eta_range[1]:
            raise ConfigError(f"tracker.eta_range must be [low, high], got {list(self.eta_range)}")
        if len(self.vertex_sigma) != 3 or min(self.vertex_sigma) < 0:
            raise ConfigError(f"tracker.vertex_sigma must be three numbers >= 0, got {self.vertex_sigma}")
        if not 0 <= self.hit_efficiency <= 1:
            raise ConfigError(f"tracker.hit_efficiency must be in [0, 1], got {self.hit_efficiency}")
        if not 0 <= self.noise_fraction < 1:
            raise ConfigError(f"tracker.noise_fraction must be in [0, 1), got {self.noise_fraction}")
        if self.layer_x0 < 0 or self.overlap_distance < 0:
            raise ConfigError("tracker.layer_x0 and tracker.overlap_distance must be >= 0")
        if not 0 <= self.double_hit_fraction <= 1:
            raise ConfigError(
                f"tracker.double_hit_fraction must be in [0, 1], got {self.double_hit_fraction}"
            )
        if self.resolution_scale < 0:
            raise ConfigError(f"tracker.resolution_scale must be >= 0, got {self.resolution_scale}")
        if self.lambda_over_x0 < 0 or self.secondary_multiplicity < 0 or self.secondary_spread < 0:
            raise ConfigError(
                "tracker.lambda_over_x0, tracker.secondary_multiplicity and tracker.secondary_spread must be "
                f">= 0, got {self.lambda_over_x0}, {self.secondary_multiplicity}, {self.secondary_spread}"
            )
        if len(self.secondary_pt) != 2 or self.secondary_pt[0] <= 0 or self.secondary_pt[1] < 0:
            raise ConfigError(
                "tracker.secondary_pt must be [minimum > 0, mean above it >= 0] (GeV), "
                f"got {list(self.secondary_pt)}"
            )

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | None) -> TrackerSimConfig:
        """Build from a config mapping, naming any unknown key."""
        options = dict(options or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ConfigError(f"tracker simulation: unknown option(s) {unknown}; known: {sorted(known)}")
        return cls(**options)


_C = TypeVar("_C", bound="_Columns")


class _Columns:
    """A dataclass of equal-length numpy columns: its length, a row subset, a concatenation."""

    def __len__(self) -> int:
        return len(getattr(self, fields(self)[0].name))  # type: ignore[arg-type]

    def take(self: _C, rows: np.ndarray) -> _C:
        return type(self)(*(getattr(self, f.name)[rows] for f in fields(self)))  # type: ignore[arg-type]

    @classmethod
    def concat(cls: type[_C], parts: Sequence[_C]) -> _C:
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)))  # type: ignore[arg-type]


@dataclass
class HelixHits(_Columns):
    """Exact crossings of helices with layers (one row per crossing, ordered by particle then turning angle).

    ``turn`` is the turning angle (rad) from the vertex to the crossing; ``tpx/tpy/tpz`` the momentum there.
    """

    particle: np.ndarray
    layer: np.ndarray
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    turn: np.ndarray
    tpx: np.ndarray
    tpy: np.ndarray
    tpz: np.ndarray


def propagate(
    detector: TrackerDetector,
    vertex: np.ndarray,
    pt: np.ndarray,
    eta: np.ndarray,
    phi: np.ndarray,
    charge: np.ndarray,
) -> HelixHits:
    """Crossings of the outgoing half-turn of each particle's helix with every layer.

    The particle turns clockwise seen from +z for positive charge in a field along +z. In the transverse
    plane it moves on the circle of centre ``c`` and radius ``R = pT / (K B)``; its angle around ``c`` is
    ``alpha(t) = alpha0 - h t`` (``h`` = sign of the charge, ``t`` the turning angle) and ``z(t) = vz + R t
    sinh(eta)``. A cylinder of radius ``r`` is crossed where ``cos(alpha - beta) = (r^2 - |c|^2 - R^2) /
    (2 R |c|)`` (``beta`` the direction of ``c``); a disk at ``z_d`` at ``t = (z_d - vz) / (R sinh eta)``.
    Crossings beyond the turn of largest distance from the beam are dropped.
    """
    vertex = np.asarray(vertex, dtype=np.float64).reshape(-1, 3)
    pt = np.asarray(pt, dtype=np.float64)
    eta = np.asarray(eta, dtype=np.float64)
    phi = np.asarray(phi, dtype=np.float64)
    charge = np.asarray(charge, dtype=np.float64)
    n = len(pt)
    if not (vertex.shape[0] == len(eta) == len(phi) == len(charge) == n):
        raise ConfigError("propagate: vertex, pt, eta, phi and charge must describe the same particles")
    if n == 0:
        empty = np.zeros(0)
        return HelixHits(*(empty.astype(np.int64),) * 2, *(empty,) * 7)
    if (charge == 0).any() or (pt <= 0).any():
        raise ConfigError("propagate: only charged particles with pT > 0 make helices")
    h = np.sign(charge)
    radius = pt / (K_GEV_PER_T_MM * detector.bfield * np.abs(charge))  # (P,)
    alpha0 = phi + h * 0.5 * math.pi
    cx = vertex[:, 0] - radius * np.cos(alpha0)
    cy = vertex[:, 1] - radius * np.sin(alpha0)
    c_norm = np.hypot(cx, cy)
    beta = np.arctan2(cy, cx)
    t_turn = np.mod(h * (alpha0 - beta), TWO_PI)
    t_turn = np.where(t_turn <= 1e-12, TWO_PI, t_turn)
    dzdt = radius * np.sinh(eta)  # dz per radian of turn

    R = radius[:, None]
    H = h[:, None]
    # Barrel layers: the smaller positive turn of the two solutions, before the turning point.
    r_layer = detector.layer_radius[None, :]
    cos_arg = (r_layer**2 - c_norm[:, None] ** 2 - R**2) / (2 * R * np.maximum(c_norm[:, None], 1e-12))
    reach = np.abs(cos_arg) <= 1
    delta = np.arccos(np.clip(cos_arg, -1, 1))
    t1 = np.mod(H * (alpha0[:, None] - (beta[:, None] + delta)), TWO_PI)
    t2 = np.mod(H * (alpha0[:, None] - (beta[:, None] - delta)), TWO_PI)
    t_barrel = np.minimum(t1, t2)
    v_r = np.hypot(vertex[:, 0], vertex[:, 1])[:, None]
    ok_barrel = reach & (t_barrel <= t_turn[:, None]) & (v_r < r_layer) & ~detector.is_disk[None, :]
    # Disks: z is linear in the turn.
    with np.errstate(divide="ignore", invalid="ignore"):
        t_disk = (detector.layer_z[None, :] - vertex[:, 2:3]) / dzdt[:, None]
    ok_disk = np.isfinite(t_disk) & (t_disk > 0) & (t_disk <= t_turn[:, None]) & detector.is_disk[None, :]
    t = np.where(detector.is_disk[None, :], t_disk, t_barrel)
    ok = np.where(detector.is_disk[None, :], ok_disk, ok_barrel)
    p_idx, l_idx = np.nonzero(ok)
    tt = t[p_idx, l_idx]
    alpha = alpha0[p_idx] - h[p_idx] * tt
    x = cx[p_idx] + radius[p_idx] * np.cos(alpha)
    y = cy[p_idx] + radius[p_idx] * np.sin(alpha)
    z = vertex[p_idx, 2] + dzdt[p_idx] * tt
    # Keep crossings inside the sensitive area (barrel length, disk radii).
    r_hit = np.hypot(x, y)
    disk = detector.is_disk[l_idx]
    inside = np.where(
        disk,
        (r_hit >= detector.layer_r_min[l_idx]) & (r_hit <= detector.layer_r_max[l_idx]),
        np.abs(z) <= detector.layer_half_length[l_idx],
    )
    p_idx, l_idx, tt, x, y, z = (a[inside] for a in (p_idx, l_idx, tt, x, y, z))
    order = np.lexsort((tt, p_idx))
    p_idx, l_idx, tt, x, y, z = (a[order] for a in (p_idx, l_idx, tt, x, y, z))
    phi_t = phi[p_idx] - h[p_idx] * tt
    return HelixHits(
        particle=p_idx.astype(np.int64),
        layer=l_idx.astype(np.int64),
        x=x,
        y=y,
        z=z,
        turn=tt,
        tpx=pt[p_idx] * np.cos(phi_t),
        tpy=pt[p_idx] * np.sin(phi_t),
        tpz=pt[p_idx] * np.sinh(eta[p_idx]),
    )


def _sample_pt(rng: np.random.Generator, n: int, lo: float, hi: float, power: float) -> np.ndarray:
    """Inverse-CDF sample of ``dN/dpT ~ pT^-power`` on ``[lo, hi]``."""
    u = rng.random(n)
    if abs(power - 1.0) < 1e-9:
        return lo * (hi / lo) ** u
    a, b = lo ** (1 - power), hi ** (1 - power)
    return (a + u * (b - a)) ** (1 / (1 - power))


def _smear(
    detector: TrackerDetector, rng: np.random.Generator, hits: HelixHits, scale: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gaussian smearing along r-phi and along z (barrel) or r (disk); the layer coordinate stays exact."""
    if len(hits) == 0:  # a scale of 0 still draws, so that the rest of the event is unchanged
        return hits.x, hits.y, hits.z
    sig = detector.resolution[hits.layer] * scale
    r = np.hypot(hits.x, hits.y)
    phi = np.arctan2(hits.y, hits.x) + rng.normal(size=len(hits)) * sig[:, 0] / np.maximum(r, 1e-9)
    disk = detector.is_disk[hits.layer]
    d_long = rng.normal(size=len(hits)) * sig[:, 1]
    r = np.where(
        disk, np.clip(r + d_long, detector.layer_r_min[hits.layer], detector.layer_r_max[hits.layer]), r
    )
    z = np.where(disk, hits.z, hits.z + d_long)
    return r * np.cos(phi), r * np.sin(phi), z


def highland(p: np.ndarray, x_over_x0: float, beta: float | np.ndarray = 1.0) -> np.ndarray:
    """Highland's multiple-scattering angle (rad, one plane) of a unit-charge particle of momentum ``p``
    (GeV) through ``x_over_x0`` radiation lengths (PDG, "Passage of particles through matter")."""
    if x_over_x0 <= 0:
        return np.zeros_like(np.asarray(p, dtype=np.float64))
    return (
        0.0136
        / (beta * np.asarray(p, dtype=np.float64))
        * np.sqrt(x_over_x0)
        * (1.0 + 0.038 * math.log(x_over_x0))
    )


def _multiple_scattering(
    rng: np.random.Generator,
    detector: TrackerDetector,
    hits: HelixHits,
    radius: np.ndarray,
    eta: np.ndarray,
    x_over_x0: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hit positions displaced by the kinks of every earlier layer crossed: ``sum_i theta_i (L - L_i)`` in
    the transverse (phi) direction and along the polar direction, with ``L = R t cosh(eta)`` the path
    length and ``theta_i`` Highland angles (the particle momentum, beta = 1; hits ordered by particle then
    turn, as :func:`propagate` returns them)."""
    if x_over_x0 <= 0 or len(hits) == 0:
        return hits.x, hits.y, hits.z
    part = hits.particle
    p = np.hypot(np.hypot(hits.tpx, hits.tpy), hits.tpz)
    path = radius[part] * hits.turn * np.cosh(eta[part])
    theta = highland(p, x_over_x0)[:, None] * rng.normal(size=(len(hits), 2))
    first = np.ones(len(hits), dtype=bool)
    first[1:] = part[1:] != part[:-1]
    start = np.maximum.accumulate(np.where(first, np.arange(len(hits)), 0))

    def exclusive_cumsum(v: np.ndarray) -> np.ndarray:
        c = np.cumsum(v, axis=0) - v
        return c - c[start]

    s_theta = exclusive_cumsum(theta)
    s_theta_path = exclusive_cumsum(theta * path[:, None])
    shift = path[:, None] * s_theta - s_theta_path  # (N, 2): transverse, polar
    pt = np.maximum(np.hypot(hits.tpx, hits.tpy), 1e-12)
    ux, uy = -hits.tpy / pt, hits.tpx / pt  # transverse, perpendicular to the momentum
    pol = (
        np.stack([hits.tpx * hits.tpz / pt, hits.tpy * hits.tpz / pt, -pt], 1) / np.maximum(p, 1e-12)[:, None]
    )
    x = hits.x + shift[:, 0] * ux + shift[:, 1] * pol[:, 0]
    y = hits.y + shift[:, 0] * uy + shift[:, 1] * pol[:, 1]
    z = hits.z + shift[:, 1] * pol[:, 2]
    # Back onto the layer's surface (barrel radius, disk z): the hit is where the scattered track crosses.
    disk = detector.is_disk[hits.layer]
    scale = np.where(disk, 1.0, detector.layer_radius[hits.layer] / np.maximum(np.hypot(x, y), 1e-12))
    return x * scale, y * scale, np.where(disk, detector.layer_z[hits.layer], z)


def _noise(
    detector: TrackerDetector, rng: np.random.Generator, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``n`` hits uniform on the union of the layers' surfaces: layer by area, then uniform on it."""
    areas = np.array([l.area for l in detector.layers])
    layer = rng.choice(detector.n_layers, size=n, p=areas / areas.sum())
    phi = rng.uniform(-math.pi, math.pi, n)
    disk = detector.is_disk[layer]
    r0, r1 = detector.layer_r_min[layer], detector.layer_r_max[layer]
    r = np.where(disk, np.sqrt(r0**2 + rng.random(n) * (r1**2 - r0**2)), detector.layer_radius[layer])
    hl = detector.layer_half_length[layer]
    z = np.where(disk, detector.layer_z[layer], rng.uniform(-1, 1, n) * hl)
    return layer, r * np.cos(phi), r * np.sin(phi), z


@dataclass
class _Particles(_Columns):
    """Generated particles of one event (primaries, then secondaries), store ids and production vertices."""

    pid: np.ndarray
    parent: np.ndarray
    pt: np.ndarray
    eta: np.ndarray
    phi: np.ndarray
    charge: np.ndarray
    vertex: np.ndarray


def _hadronic_interactions(
    detector: TrackerDetector,
    c: TrackerSimConfig,
    rng: np.random.Generator,
    parts: _Particles,
    hits: HelixHits,
) -> tuple[_Particles, HelixHits]:
    """Primaries interacting in a layer stop there (their later crossings dropped) and give secondaries
    produced at that crossing, propagated (with multiple scattering) from it outwards; one generation.

    ``hits`` are the primaries' crossings ordered by particle then turn. Returns all particles (primaries
    first) and all crossings, the secondaries' ``particle`` indices following the primaries'.
    """
    probability = c.layer_x0 / c.lambda_over_x0 if c.lambda_over_x0 > 0 else 0.0
    if probability <= 0 or len(hits) == 0:
        return parts, hits
    n_prim = len(parts)
    interacts = rng.random(len(hits)) < probability
    # The first interaction of each particle: its crossing index (len(hits) when none).
    first = np.full(n_prim, len(hits), dtype=np.int64)
    np.minimum.at(first, hits.particle[interacts], np.flatnonzero(interacts))
    parents = np.flatnonzero(first < len(hits))
    hits = hits.take(np.arange(len(hits)) <= first[hits.particle])
    # An interacting particle's last kept crossing is where it interacted.
    last = np.r_[hits.particle[1:] != hits.particle[:-1], True]
    row = np.zeros(n_prim, dtype=np.int64)
    row[hits.particle[last]] = np.flatnonzero(last)
    k = row[parents]
    n_sec = np.maximum(rng.poisson(c.secondary_multiplicity, len(parents)), 1)
    parent = np.repeat(parents, n_sec)
    cross = np.repeat(k, n_sec)
    n = len(parent)
    if n == 0:
        return parts, hits
    serial = np.arange(n) - np.repeat(np.cumsum(n_sec) - n_sec, n_sec) + 1  # 1.. within the parent
    pt = (
        c.secondary_pt[0] + rng.exponential(c.secondary_pt[1], n)
        if c.secondary_pt[1]
        else np.full(n, c.secondary_pt[0])
    )
    local_phi = np.arctan2(hits.tpy[cross], hits.tpx[cross])
    phi = np.mod(local_phi + rng.normal(size=n) * c.secondary_spread + math.pi, TWO_PI) - math.pi
    eta = parts.eta[parent] + rng.normal(size=n) * c.secondary_spread
    charge = np.where(rng.random(n) < 0.5, -1, 1).astype(np.int64)
    vertex = np.stack([hits.x[cross], hits.y[cross], hits.z[cross]], 1)
    sec = propagate(detector, vertex, pt, eta, phi, charge)
    # Produced in the parent's layer: a crossing of that same layer is the production point itself.
    sec = sec.take(sec.layer != hits.layer[cross][sec.particle])
    if c.layer_x0 > 0:
        radius = pt / (K_GEV_PER_T_MM * detector.bfield)
        sec.x, sec.y, sec.z = _multiple_scattering(rng, detector, sec, radius, eta, c.layer_x0)
    sec.particle = sec.particle + n_prim
    pid = (
        (parts.pid[parent] << PRIMARY_SHIFT) | (1 << GENERATION_SHIFT) | (serial << SECONDARY_SHIFT)
    ).astype(np.int64)
    secondaries = _Particles(pid, parts.pid[parent], pt, eta, phi, charge, vertex)
    return _Particles.concat([parts, secondaries]), HelixHits.concat([hits, sec])


def simulate_tracker_event(
    detector: TrackerDetector, config: TrackerSimConfig, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """One event as store fields (hits and particles, no offsets): primaries have ids 1..P, secondaries
    TrackML's encoding (generation 1, ``particle_parent_id`` their primary's id); 0 marks noise."""
    c = config
    n_part = int(rng.poisson(c.n_particles)) if c.poisson_multiplicity else int(c.n_particles)
    pt = _sample_pt(rng, n_part, *c.pt_range, c.pt_power)
    eta = rng.uniform(*c.eta_range, n_part)
    phi = rng.uniform(-math.pi, math.pi, n_part)
    charge = np.where(rng.random(n_part) < 0.5, -1, 1).astype(np.int64)
    vertex = rng.normal(size=(n_part, 3)) * np.asarray(c.vertex_sigma)
    hits = propagate(detector, vertex, pt, eta, phi, charge)
    radius = pt / (K_GEV_PER_T_MM * detector.bfield)
    if c.layer_x0 > 0:
        hits.x, hits.y, hits.z = _multiple_scattering(rng, detector, hits, radius, eta, c.layer_x0)
    ids = np.arange(1, n_part + 1, dtype=np.int64)
    parts = _Particles(ids, np.zeros(n_part, np.int64), pt, eta, phi, charge, vertex)
    parts, hits = _hadronic_interactions(detector, c, rng, parts, hits)
    if c.hit_efficiency < 1:
        keep = rng.random(len(hits)) < c.hit_efficiency
        hits = hits.take(keep)
    # double_hit_fraction of the particle hits are second hits: f / (1 - f) of the crossings get one.
    p_twin = c.double_hit_fraction / (1.0 - c.double_hit_fraction)
    twin = np.flatnonzero(rng.random(len(hits)) < p_twin) if c.double_hit_fraction else np.zeros(0, np.int64)
    if len(twin):
        # The overlapping module sits overlap_distance further out (radius for barrels, |z| for disks):
        # the particle's second hit is where its (straight, over a few mm) track reaches it.
        px, py, pz = hits.tpx[twin], hits.tpy[twin], hits.tpz[twin]
        pt_t = np.maximum(np.hypot(px, py), 1e-12)
        r_t = np.maximum(np.hypot(hits.x[twin], hits.y[twin]), 1e-12)
        radial = (hits.x[twin] * px + hits.y[twin] * py) / (r_t * pt_t)
        disk = detector.is_disk[hits.layer[twin]]
        # path per unit of pT (barrel) or of |pz| (disk) to move overlap_distance outwards
        step = np.where(
            disk,
            c.overlap_distance / np.maximum(np.abs(pz), 1e-12),
            c.overlap_distance / (np.maximum(radial, 0.1) * pt_t),
        )
        extra = HelixHits(
            particle=hits.particle[twin],
            layer=hits.layer[twin],
            x=hits.x[twin] + px * step,
            y=hits.y[twin] + py * step,
            z=hits.z[twin] + pz * step,
            turn=hits.turn[twin],
            tpx=px,
            tpy=py,
            tpz=pz,
        )
        hits = HelixHits.concat([hits, extra])
    x, y, z = _smear(detector, rng, hits, c.resolution_scale)
    n_true = len(hits)
    n_noise = int(rng.poisson(c.noise_fraction / (1 - c.noise_fraction) * n_true)) if c.noise_fraction else 0
    nl, nx, ny, nz = _noise(detector, rng, n_noise)
    layer = np.concatenate([hits.layer, nl])
    x, y, z = np.concatenate([x, nx]), np.concatenate([y, ny]), np.concatenate([z, nz])
    pid = np.concatenate([parts.pid[hits.particle], np.zeros(n_noise, np.int64)])
    tp = [np.concatenate([getattr(hits, k), np.zeros(n_noise)]) for k in ("tpx", "tpy", "tpz")]
    module = detector.module_of(layer, x, y, z)
    # Hits ordered by layer and module as a detector reads them out: no truth left in the order.
    order = np.lexsort((rng.random(len(layer)), module, layer))
    nhits = np.bincount(hits.particle, minlength=len(parts))
    f32 = np.float32
    return {
        "hit_x": x[order].astype(f32),
        "hit_y": y[order].astype(f32),
        "hit_z": z[order].astype(f32),
        "hit_volume_id": detector.volume_id[layer[order]].astype(np.int32),
        "hit_layer_id": detector.layer_id[layer[order]].astype(np.int32),
        "hit_module_id": module[order].astype(np.int32),
        "hit_particle_id": pid[order].astype(np.int64),
        "hit_tpx": tp[0][order].astype(f32),
        "hit_tpy": tp[1][order].astype(f32),
        "hit_tpz": tp[2][order].astype(f32),
        "particle_id": parts.pid,
        "particle_parent_id": parts.parent,
        "particle_pt": parts.pt.astype(f32),
        "particle_eta": parts.eta.astype(f32),
        "particle_phi": parts.phi.astype(f32),
        "particle_charge": parts.charge.astype(np.int32),
        "particle_vx": parts.vertex[:, 0].astype(f32),
        "particle_vy": parts.vertex[:, 1].astype(f32),
        "particle_vz": parts.vertex[:, 2].astype(f32),
        "particle_nhits": nhits.astype(np.int32),
    }


def simulate_tracker(
    detector: TrackerDetector,
    n_events: int,
    config: TrackerSimConfig | None = None,
    seed: int = 0,
    first_event: int = 0,
) -> dict[str, np.ndarray]:
    """Events ``first_event .. first_event + n_events - 1`` in the store layout (with offsets)."""
    if n_events < 0:
        raise ConfigError(f"n_events must be >= 0, got {n_events}")
    if seed < 0 or first_event < 0:
        raise ConfigError(f"seed and first_event must be >= 0, got {seed} and {first_event}")
    config = config or TrackerSimConfig()
    events = [
        simulate_tracker_event(detector, config, np.random.default_rng([seed, first_event + i]))
        for i in range(n_events)
    ]
    return concat_events(events, event_ids=np.arange(first_event, first_event + n_events))


def concat_events(events: Sequence[Mapping[str, np.ndarray]], event_ids: np.ndarray) -> dict[str, np.ndarray]:
    """Per-event dicts of ``hit_*``/``particle_*`` fields -> one store chunk with ``event_*_index``."""
    out: dict[str, np.ndarray] = {}
    if not events:
        return out
    for otype, prefix in (("hits", "hit_"), ("particles", "particle_")):
        names = [k for k in events[0] if k.startswith(prefix)]
        counts = np.array([len(ev[names[0]]) for ev in events], dtype=np.int64)
        out[f"event_{otype}_index"] = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        for name in names:
            out[name] = np.concatenate([ev[name] for ev in events])
    out["event_ids"] = np.asarray(event_ids, dtype=np.int32)
    return out


def simulate_tracker_to_store(
    detector: TrackerDetector,
    output: str | Path,
    *,
    n_events: int,
    seed: int = 0,
    chunk_size: int = 100,
    split_path: str | Path | None = None,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    split_seed: int = 0,
    overwrite: bool = False,
    config: Mapping[str, Any] | None = None,
    **options: Any,
) -> tuple[Path, Path]:
    """Simulate ``n_events`` toy tracking events into ``output`` plus a split file.

    ``options`` are :class:`TrackerSimConfig` fields. The store is written chunk by chunk under a temporary
    name and renamed when complete; an existing output is refused unless ``overwrite``.
    """

    if chunk_size < 1:
        raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}")
    sim = TrackerSimConfig.from_options(options)
    output = Path(output)
    attrs = {
        "detector": detector.name,
        "bfield": detector.bfield,
        "generator": "recoml.families.tracking.simulation toy helices",
        "units": "mm, GeV",
        "seed": seed,
        "simulation": asdict(sim),
        "config": dict(config or {}),
    }
    return write_simulation(
        output,
        lambda start, count: simulate_tracker(detector, count, sim, seed=seed, first_event=start),
        n_events=n_events,
        block_size=chunk_size,
        attrs=attrs,
        name=detector.name,
        split_path=split_path,
        fractions=fractions,
        split_seed=split_seed,
        overwrite=overwrite,
        object_types=("hits", "particles"),
    )
