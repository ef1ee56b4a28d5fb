"""The sensor-array detector: sensors anywhere, each with a position, a facing direction, the module
(optical module, mPMT) and string it sits on, and the identifiers its data uses."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import numpy as np

from recoml.contracts.detector import Detector
from recoml.data.identity import Fingerprint, fingerprint_positions
from recoml.errors import GeometryError


@dataclass(frozen=True, eq=False)
class SensorArrayDetector(Detector):
    """Sensors in cm and ns; sensor ``k`` (as in ``hit_pmt``) is row ``k`` of every array.

    ``sensor_ids (P, K)`` are the identifiers the data uses, named by ``sensor_id_names`` (KM3NeT:
    ``("dom_id", "channel_id")``); converters map hits to sensors by lookup in them. ``sensor_t0`` is
    each sensor's time calibration offset (ns), subtracted from raw hit times by converters that ask.
    """

    name: str
    sensor_positions: np.ndarray  # (P, 3) float32, cm
    sensor_directions: np.ndarray  # (P, 3) float32, unit
    module_index: np.ndarray  # (P,) int64, 0..M-1: the module (optical module) of each sensor
    string_index: np.ndarray  # (P,) int64: the string (detection unit) of each sensor, -1 if none
    sensor_ids: np.ndarray  # (P, K) int64
    sensor_id_names: tuple[str, ...]
    sensor_t0: np.ndarray | None = None  # (P,) float32, ns (None: zeros)
    pmt_radius: float = 4.0  # cm: photocathode radius used by the toy simulation (3-inch PMTs)
    family: ClassVar[str] = "sensor_array"
    simulator_target: ClassVar[str] = "recoml.families.sensor_array.sim.simulate_to_store"
    event_display: ClassVar[str] = "recoml.families.sensor_array.display"
    image_pixel: None = None  # no image map: graphs and point clouds only
    image_map_note: str = "a sensor array has no image map"

    def __post_init__(self) -> None:
        n = len(self.sensor_positions)
        for name in ("sensor_positions", "sensor_directions"):
            if np.shape(getattr(self, name)) != (n, 3):
                raise GeometryError(f"detector {self.name}: {name} must have shape ({n}, 3)")
        for name in ("module_index", "string_index"):
            if np.shape(getattr(self, name)) != (n,):
                raise GeometryError(f"detector {self.name}: {name} must have shape ({n},)")
        if np.shape(self.sensor_ids) != (n, len(self.sensor_id_names)):
            raise GeometryError(
                f"detector {self.name}: sensor_ids must have shape ({n}, {len(self.sensor_id_names)})"
            )
        if self.sensor_t0 is None:
            object.__setattr__(self, "sensor_t0", np.zeros(n, dtype=np.float32))
        norms = np.linalg.norm(self.sensor_directions, axis=1)
        if n and not np.allclose(norms, 1.0, atol=1e-2):
            raise GeometryError(
                f"detector {self.name}: sensor {int(np.argmax(np.abs(norms - 1)))} has a non-unit direction"
            )

    # The names the generic representations read (PMT is what water-Cherenkov code calls a sensor).
    @property
    def pmt_positions(self) -> np.ndarray:
        return self.sensor_positions

    @property
    def pmt_directions(self) -> np.ndarray:
        return self.sensor_directions

    @property
    def n_pmts(self) -> int:
        return len(self.sensor_positions)

    @property
    def n_sensors(self) -> int:
        return len(self.sensor_positions)

    @property
    def n_modules(self) -> int:
        return int(self.module_index.max()) + 1 if self.n_sensors else 0

    @cached_property
    def fingerprint(self) -> Fingerprint:
        return fingerprint_positions(self.sensor_positions)

    @cached_property
    def centre(self) -> np.ndarray:
        """Centre of the sensors' bounding box (cm)."""
        return (self.sensor_positions.min(axis=0) + self.sensor_positions.max(axis=0)) / 2

    @cached_property
    def half_extent(self) -> np.ndarray:
        """Half the bounding box size per axis (cm)."""
        return np.maximum((self.sensor_positions.max(axis=0) - self.sensor_positions.min(axis=0)) / 2, 1.0)

    def feature_scales(self) -> dict[str, tuple[float, float]]:
        """``(mean, std)`` of the geometric features: positions over the array's extent, unit directions."""
        c, h = self.centre, self.half_extent
        return {
            "x": (float(c[0]), float(h[0])),
            "y": (float(c[1]), float(h[1])),
            "z": (float(c[2]), float(h[2])),
            "dir_x": (0.0, 1.0),
            "dir_y": (0.0, 1.0),
            "dir_z": (0.0, 1.0),
        }
