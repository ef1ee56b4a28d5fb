"""Detector geometries: water-Cherenkov cylinders (PMTs, mPMTs, image maps), trackers, and file readers."""

from recoml.detectors.cylinder import build_cylinder
from recoml.detectors.geometry import WCDetector
from recoml.detectors.image_map import image_map_from_positions, read_image_map_csv
from recoml.detectors.readers import TubeTable, load_geometry, read_tube_table
from recoml.detectors.tracker import TrackerDetector, build_tracker, load_trackml_detector

__all__ = [
    "TrackerDetector",
    "TubeTable",
    "WCDetector",
    "build_cylinder",
    "build_tracker",
    "image_map_from_positions",
    "load_geometry",
    "load_trackml_detector",
    "read_image_map_csv",
    "read_tube_table",
]
