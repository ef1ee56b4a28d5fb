"""Detector geometries: water-Cherenkov cylinders (PMTs, mPMTs, image maps) and file readers."""

from recoml.detectors.cylinder import build_cylinder
from recoml.detectors.geometry import WCDetector
from recoml.detectors.image_map import image_map_from_positions, read_image_map_csv
from recoml.detectors.readers import TubeTable, load_geometry, read_tube_table

__all__ = [
    "TubeTable",
    "WCDetector",
    "build_cylinder",
    "image_map_from_positions",
    "load_geometry",
    "read_image_map_csv",
    "read_tube_table",
]
