"""Particle table and event kinematics for the toy water-Cherenkov simulation.

Energies are *kinetic* energies in MeV (for a photon kinetic = total energy), as a Geant4/WCSim particle
gun takes them. Directions are unit vectors; the tank axis is y.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from recoml.errors import ConfigError
from recoml.metrics.physics import ELECTRON_MASS, MUON_MASS, PI0_MASS

# How a particle makes light in the simulation.
KIND_SHOWER = 0  # e-, e+ (and converted gammas): electromagnetic shower, fuzzy ring
KIND_MUON = 1  # mu-, mu+: straight track with continuous energy loss, sharp ring
KIND_GAMMA = 2  # gamma: travels without light, converts, then showers
KIND_PI0 = 3  # pi0: decays at the vertex into two gammas


@dataclass(frozen=True)
class ParticleSpec:
    """One accepted particle name: its event-store label, mass (MeV) and how it is simulated."""

    label: int
    mass: float
    kind: int


PARTICLES: dict[str, ParticleSpec] = {
    "gamma": ParticleSpec(label=0, mass=0.0, kind=KIND_GAMMA),
    "e-": ParticleSpec(label=1, mass=ELECTRON_MASS, kind=KIND_SHOWER),
    "e+": ParticleSpec(label=1, mass=ELECTRON_MASS, kind=KIND_SHOWER),
    "mu-": ParticleSpec(label=2, mass=MUON_MASS, kind=KIND_MUON),
    "mu+": ParticleSpec(label=2, mass=MUON_MASS, kind=KIND_MUON),
    "pi0": ParticleSpec(label=3, mass=PI0_MASS, kind=KIND_PI0),
}


def check_particles(names: Sequence[str], allow_empty: bool = False) -> list[str]:
    """Validate particle names early, so a typo in a config fails before any event is simulated."""
    if isinstance(names, str):
        names = [names]
    names = list(names)
    if not names and not allow_empty:
        raise ConfigError(f"particles is empty; accepted particles are {sorted(PARTICLES)}")
    unknown = [n for n in names if n not in PARTICLES]
    if unknown:
        raise ConfigError(f"unknown particle(s) {unknown}; accepted particles are {sorted(PARTICLES)}")
    return names


def isotropic_directions(n: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, 3)`` unit vectors uniform on the sphere (uniform cos and azimuth)."""
    cos = rng.uniform(-1.0, 1.0, n)
    phi = rng.uniform(0.0, 2.0 * np.pi, n)
    sin = np.sqrt(1.0 - cos * cos)
    return np.stack([sin * np.cos(phi), cos, sin * np.sin(phi)], axis=-1)


def uniform_cylinder_points(
    n: int, radius: float, half_height: float, rng: np.random.Generator
) -> np.ndarray:
    """``(n, 3)`` points uniform in the volume of a y-axis cylinder centred on the origin."""
    r = radius * np.sqrt(rng.random(n))
    phi = rng.uniform(0.0, 2.0 * np.pi, n)
    y = rng.uniform(-half_height, half_height, n)
    return np.stack([r * np.cos(phi), y, r * np.sin(phi)], axis=-1)


def directions_to_angles(directions: np.ndarray) -> np.ndarray:
    """``(..., 2)`` (polar, azimuth) with polar = arccos(d_y) and azimuth = atan2(d_z, d_x) (tank axis y)."""
    d = np.asarray(directions, dtype=np.float64)
    polar = np.arccos(np.clip(d[..., 1], -1.0, 1.0))
    azimuth = np.arctan2(d[..., 2], d[..., 0])
    return np.stack([polar, azimuth], axis=-1)


def pi0_decay(
    kinetic_energy: np.ndarray, directions: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Decay pi0 -> 2 gamma: isotropic in the pi0 rest frame, boosted along the pi0 direction.

    Returns photon energies ``(n, 2)`` (MeV) and unit directions ``(n, 2, 3)``; by construction the
    pair's invariant mass is the pi0 mass and its momentum the pi0 momentum.
    """
    t = np.atleast_1d(np.asarray(kinetic_energy, dtype=np.float64))
    axis = np.atleast_2d(np.asarray(directions, dtype=np.float64))
    axis = axis / np.linalg.norm(axis, axis=1, keepdims=True)
    n = len(t)
    e_pi = t + PI0_MASS
    gamma = e_pi / PI0_MASS
    beta = np.sqrt(np.maximum(1.0 - 1.0 / (gamma * gamma), 0.0))
    # Rest frame: each photon has energy m/2, back to back along a random unit vector.
    c_star = isotropic_directions(n, rng)
    e_star = 0.5 * PI0_MASS
    energies = np.empty((n, 2))
    dirs = np.empty((n, 2, 3))
    for k, sign in enumerate((1.0, -1.0)):
        p_star = sign * e_star * c_star  # (n, 3) momentum in the rest frame
        p_par = np.sum(p_star * axis, axis=1)
        p_perp = p_star - p_par[:, None] * axis
        e_lab = gamma * (e_star + beta * p_par)
        p_lab = p_perp + (gamma * (p_par + beta * e_star))[:, None] * axis
        energies[:, k] = e_lab
        dirs[:, k] = p_lab / np.linalg.norm(p_lab, axis=1, keepdims=True)
    return energies, dirs


def invariant_mass(energies: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Invariant mass (MeV) of massless pairs: m^2 = 2 E1 E2 (1 - cos theta_12). Used to check pi0 decays."""
    cos12 = np.sum(directions[:, 0] * directions[:, 1], axis=-1)
    return np.sqrt(np.maximum(2.0 * energies[:, 0] * energies[:, 1] * (1.0 - cos12), 0.0))


def orthonormal_frames(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors ``u, v`` with ``(u, v, w)`` orthonormal, to place photons on a cone around ``w``."""
    helper = np.zeros_like(w)
    use_x = np.abs(w[:, 0]) < 0.9
    helper[use_x, 0] = 1.0
    helper[~use_x, 1] = 1.0
    u = np.cross(w, helper)
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    v = np.cross(w, u)
    return u, v
