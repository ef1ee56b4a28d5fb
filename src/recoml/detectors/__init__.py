"""Detector geometries: water-Cherenkov cylinders (PMTs, mPMTs, image maps) and file readers."""

from recoml.detectors.cylinder import build_cylinder
from recoml.detectors.geometry import WCDetector

__all__ = ["WCDetector", "build_cylinder"]
