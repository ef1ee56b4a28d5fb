"""Cherenkov light of a muon's knock-on electrons (delta rays), from the PDG review "Passage of particles
through matter" (section "Energetic knock-on electrons"), for the toy simulation (docs/physics.md).

A muon of momentum p knocks electrons out with kinetic energy T up to W_max = 2 m_e beta^2 gamma^2 / (1 +
2 gamma m_e / M + (m_e / M)^2), at ``d2N/dT dx = (1/2) K <Z/A> rho / beta^2 (1 - beta^2 T / W_max) / T^2``
(spin 0; the spin-1/2 term T^2 / 2E^2 is below 1e-3 here) and at ``cos theta = (T / p_e)(p_max / W_max)``
to the muon. Each electron above the Cherenkov threshold (0.264 MeV in water) radiates while it slows down
at ``ELECTRON_DEDX``: its Cherenkov-equivalent track (cm of beta = 1 light) is ``integral of sin^2
theta(beta) / sin^2 theta(1) dT / (dE/dx)``. Integrated over T this is the knock-on light per cm of muon
(0.095 cm/cm for a 500 MeV muon: 9 % of its light), which the simulation adds to the muon's own.

Where that light goes: the electron leaves at its emission angle, emits its own Cherenkov cone about its
direction and is deflected by multiple scattering (PDG, Rossi's theta_0^2 = (13.6 MeV / beta p)^2 dx / X0
per step) as it slows; a small deterministic Monte Carlo of electrons gives the polar angle of the light
about the muon, tabulated in a few W_max bins (it broadens as W_max falls: more slow, wide-angle
electrons).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from recoml.families.water_cherenkov.particles import ELECTRON_MASS, MUON_MASS

__all__ = ["KnockOnTables", "knock_on_tables", "knock_on_track_per_cm", "max_energy_transfer"]

#: K <Z/A> rho of water (MeV/cm): K = 4 pi N_A r_e^2 m_e c^2 = 0.307075 MeV cm^2/mol, <Z/A> = 0.55509 (PDG).
K_ZA_WATER = 0.307075 * 0.55509
#: Stopping power of the knock-on electrons (MeV/cm): water's collision stopping power for 1-30 MeV
#: electrons is 1.85-2.0 MeV cm^2/g (PDG / NIST ESTAR); bremsstrahlung is small below E_c = 78 MeV.
ELECTRON_DEDX = 2.0
RADIATION_LENGTH = 36.08  # cm, water (PDG)
#: W_max (MeV) at which the angular distribution of the knock-on light is tabulated.
W_BINS = (3.0, 10.0, 30.0, 100.0)


def max_energy_transfer(p_muon: np.ndarray) -> np.ndarray:
    """W_max (MeV) of a muon of momentum ``p_muon`` (MeV) on a free electron (PDG)."""
    p = np.asarray(p_muon, dtype=np.float64)
    gamma = np.sqrt(p * p + MUON_MASS**2) / MUON_MASS
    ratio = ELECTRON_MASS / MUON_MASS
    return 2.0 * ELECTRON_MASS * (p / MUON_MASS) ** 2 / (1.0 + 2.0 * gamma * ratio + ratio * ratio)


def _threshold(n: float) -> float:
    """Kinetic energy (MeV) of an electron at beta = 1 / n."""
    return ELECTRON_MASS * (1.0 / np.sqrt(1.0 - 1.0 / n**2) - 1.0)


def _cherenkov_weight(kinetic: np.ndarray, n: float) -> np.ndarray:
    """sin^2 theta(beta) / sin^2 theta(1) of electrons of ``kinetic`` MeV (0 below threshold)."""
    gamma = 1.0 + np.asarray(kinetic, dtype=np.float64) / ELECTRON_MASS
    beta2 = 1.0 - 1.0 / gamma**2
    return np.maximum(1.0 - 1.0 / (n * n * beta2), 0.0) / (1.0 - 1.0 / n**2)


def knock_on_track_per_cm(p_muon: np.ndarray, n: float, points: int = 2000) -> np.ndarray:
    """Cherenkov-equivalent track (cm of beta = 1 light) of the knock-on electrons per cm of muon."""
    t_th = _threshold(n)
    out = np.zeros(np.shape(np.atleast_1d(p_muon)))
    for i, p in enumerate(np.atleast_1d(np.asarray(p_muon, dtype=np.float64))):
        w_max = float(max_energy_transfer(p))
        if w_max <= t_th:
            continue
        beta2 = p * p / (p * p + MUON_MASS**2)
        t = np.geomspace(t_th, w_max, points)
        w = _cherenkov_weight(t, n) / ELECTRON_DEDX
        track = np.concatenate([[0.0], np.cumsum(0.5 * (w[1:] + w[:-1]) * np.diff(t))])
        f = 0.5 * K_ZA_WATER / beta2 * (1.0 - beta2 * t / w_max) / t**2 * track
        out[i] = np.sum(0.5 * (f[1:] + f[:-1]) * np.diff(t))
    return out


def knock_on_light_cosines(
    w_max: float, n: float, electrons: int = 4096, steps: int = 24, bins: int = 4096
) -> np.ndarray:
    """``bins`` equal-probability quantiles of cos(angle to the muon) of the knock-on electrons' Cherenkov
    light for a muon with ``w_max`` (deterministic: a fixed seed)."""
    rng = np.random.default_rng(20130102)
    t_th = _threshold(n)
    u = (np.arange(electrons) + 0.5) / electrons
    t0 = t_th * (w_max / t_th) ** u  # log-uniform in T: weight T x d2N/dT dx ~ (1 - T / W_max) / T
    weight = (1.0 - t0 / w_max) / t0
    p0 = np.sqrt(t0 * (t0 + 2.0 * ELECTRON_MASS))
    p_max = np.sqrt(w_max * (w_max + 2.0 * ELECTRON_MASS))
    cos_d = np.minimum(t0 / p0 * p_max / w_max, 1.0)
    phi = 2.0 * np.pi * rng.random(electrons)
    sin_d = np.sqrt(1.0 - cos_d**2)
    d = np.stack([sin_d * np.cos(phi), sin_d * np.sin(phi), cos_d], axis=1)
    levels = t0[:, None] * (t_th / t0[:, None]) ** np.linspace(0.0, 1.0, steps + 1)[None, :]
    cosines, weights = [], []
    for k in range(steps):
        t_mid = 0.5 * (levels[:, k] + levels[:, k + 1])
        dx = (levels[:, k] - levels[:, k + 1]) / ELECTRON_DEDX
        beta = np.sqrt(1.0 - (ELECTRON_MASS / (t_mid + ELECTRON_MASS)) ** 2)
        cos_c = np.minimum(1.0 / (n * beta), 1.0)
        sin_c = np.sqrt(1.0 - cos_c**2)
        other = np.where(np.abs(d[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
        e1 = np.cross(d, other)
        e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
        e2 = np.cross(d, e1)
        for _ in range(2):  # two photons per electron and step, at random azimuths about it
            psi = 2.0 * np.pi * rng.random(electrons)
            cosines.append(cos_c * d[:, 2] + sin_c * (np.cos(psi) * e1[:, 2] + np.sin(psi) * e2[:, 2]))
            weights.append(0.5 * weight * _cherenkov_weight(t_mid, n) * dx)
        theta0 = (
            13.6 / (beta * np.sqrt(t_mid * (t_mid + 2.0 * ELECTRON_MASS))) * np.sqrt(dx / RADIATION_LENGTH)
        )
        kick = theta0[:, None] * (
            rng.standard_normal((electrons, 1)) * e1 + rng.standard_normal((electrons, 1)) * e2
        )
        d = d + kick
        d /= np.linalg.norm(d, axis=1, keepdims=True)
    c, w = np.concatenate(cosines), np.concatenate(weights)
    order = np.argsort(c)
    cdf = np.cumsum(w[order])
    q = (np.arange(bins) + 0.5) / bins * cdf[-1]
    return np.clip(c[order][np.minimum(np.searchsorted(cdf, q), len(c) - 1)], -1.0, 1.0)


@dataclass(frozen=True)
class KnockOnTables:
    """Lookup tables of the knock-on light for the photon tracer (float32)."""

    log_momentum: np.ndarray  # grid of ln(p / MeV)
    per_cm: np.ndarray  # knock-on Cherenkov-equivalent track per cm of muon on that grid
    bin_edges: np.ndarray  # muon momenta (MeV) between the W_BINS angular tables
    cos: np.ndarray  # (len(W_BINS) * 4096,) cos of the light's angle to the muon
    sin: np.ndarray


@functools.lru_cache(maxsize=4)
def knock_on_tables(n: float) -> KnockOnTables:
    """:class:`KnockOnTables` for refractive index ``n``."""
    p = np.geomspace(50.0, 1e5, 256)
    w_of_p = max_energy_transfer(p)
    edges = np.sqrt(np.array(W_BINS[:-1]) * np.array(W_BINS[1:]))  # geometric midpoints in W
    cos = np.concatenate([knock_on_light_cosines(w, n) for w in W_BINS])
    f32 = np.float32
    return KnockOnTables(
        log_momentum=np.log(p).astype(f32),
        per_cm=knock_on_track_per_cm(p, n).astype(f32),
        bin_edges=np.interp(edges, w_of_p, p).astype(f32),
        cos=cos.astype(f32),
        sin=np.sqrt(1.0 - cos**2).astype(f32),
    )
