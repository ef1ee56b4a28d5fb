"""Match water-Cherenkov hits given as positions to the nearest PMT of a detector geometry.

Flat files made from WCSim often store where a hit is (the PMT or photon position) rather than the PMT id
recoml's store needs. A KD-tree over the detector's PMT positions finds the nearest PMT of each hit; a hit
farther than the tolerance from every PMT means the file was made with another geometry (or other units or
axes), which would otherwise silently scramble every image.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from recoml.errors import GeometryError

__all__ = ["PmtMatcher"]


class PmtMatcher:
    """Nearest-PMT lookup for one detector; picklable (the KD-tree is rebuilt lazily in each process)."""

    def __init__(self, positions: np.ndarray, name: str, tolerance: float) -> None:
        self.positions = np.ascontiguousarray(positions, dtype=np.float64)
        if self.positions.ndim != 2 or self.positions.shape[1] != 3 or not len(self.positions):
            raise GeometryError(
                f"detector '{name}': PMT positions must have shape (P, 3), got {positions.shape}"
            )
        self.name = name
        self.tolerance = float(tolerance)
        self._tree: cKDTree | None = None

    @classmethod
    def from_detector(cls, detector: Any, tolerance: float | None = None) -> PmtMatcher:
        """From a water-Cherenkov detector; default tolerance twice its PMT radius (cm)."""
        tol = 2.0 * float(detector.pmt_radius) if tolerance is None else float(tolerance)
        return cls(detector.pmt_positions, detector.name, tol)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_tree": None}

    @property
    def tree(self) -> cKDTree:
        if self._tree is None:
            self._tree = cKDTree(self.positions)
        return self._tree

    def match(self, xyz: np.ndarray, where: str, event_of_hit: np.ndarray | None = None) -> np.ndarray:
        """PMT index (int32) of each hit position ``(H, 3)`` in cm; GeometryError if any is too far."""
        if not len(xyz):
            return np.zeros(0, dtype=np.int32)
        dist, idx = self.tree.query(np.asarray(xyz, dtype=np.float64), k=1)
        dist, idx = np.asarray(dist), np.asarray(idx)  # arrays for (H, 3) queries; the stub allows scalars
        far = dist > self.tolerance
        if far.any():
            first = int(np.flatnonzero(far)[0])
            in_event = f", first in event {int(event_of_hit[first])}" if event_of_hit is not None else ""
            raise GeometryError(
                f"{where}: {int(far.sum())} of {len(xyz)} hits lie farther than {self.tolerance:.3g} cm from "
                f"every PMT of detector '{self.name}' (up to {float(dist.max()):.3g} cm{in_event}): the "
                "geometry does not match the data; choose the detector the file was made with "
                "(e.g. detector=from_file detector.path=<geofile>) or check the units and axes of "
                "pmt_match.position (cm, tank axis y)"
            )
        return idx.astype(np.int32)
