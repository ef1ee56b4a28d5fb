"""Water-Cherenkov detectors (WCTE, IWCD, Super-K, Hyper-K): cylinder geometries of PMTs or mPMTs, WCSim
and WatChMaL geometry readers, image maps, the toy ring simulation, wall distances and cylinder
symmetries."""

from recoml.families.water_cherenkov.cylinder import build_cylinder
from recoml.families.water_cherenkov.detector import WCDetector
from recoml.families.water_cherenkov.image_map import image_map_from_positions, read_image_map_csv
from recoml.families.water_cherenkov.particles import (
    PARTICLES,
    directions_to_angles,
    invariant_mass,
    pi0_decay,
)
from recoml.families.water_cherenkov.readers import TubeTable, load_geometry, read_tube_table
from recoml.families.water_cherenkov.simulation import (
    PhysicsConfig,
    light_sources,
    simulate,
    simulate_particles,
)
from recoml.families.water_cherenkov.to_store import simulate_to_store

__all__ = [
    "PARTICLES",
    "PhysicsConfig",
    "TubeTable",
    "WCDetector",
    "build_cylinder",
    "directions_to_angles",
    "image_map_from_positions",
    "invariant_mass",
    "light_sources",
    "load_geometry",
    "pi0_decay",
    "read_image_map_csv",
    "read_tube_table",
    "simulate",
    "simulate_particles",
    "simulate_to_store",
]
