"""Fast vectorised toy generators: water-Cherenkov rings (:func:`simulate`)."""

from recoml.sim.particles import PARTICLES, directions_to_angles, invariant_mass, pi0_decay
from recoml.sim.water_cherenkov import (
    PhysicsConfig,
    light_sources,
    simulate,
    simulate_particles,
)

__all__ = [
    "PARTICLES",
    "PhysicsConfig",
    "directions_to_angles",
    "invariant_mass",
    "light_sources",
    "pi0_decay",
    "simulate",
    "simulate_particles",
]
