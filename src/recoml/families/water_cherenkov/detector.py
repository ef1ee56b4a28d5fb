"""The water-Cherenkov detector description shared by simulation, representations and readers.

Coordinates are in cm with the tank axis along y (the WatChMaL/WCSim convention used by the event store).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from recoml.contracts.detector import Detector
from recoml.errors import GeometryError
from recoml.metrics.physics import distance_to_wall, towall


@dataclass(frozen=True, eq=False)
class WCDetector(Detector):
    """A cylindrical water-Cherenkov detector.

    PMT ``k`` (0-based, as stored in ``hit_pmt``) has position ``pmt_positions[k]`` and inward facing
    direction ``pmt_directions[k]``. For mPMT detectors ``pmts_per_module`` is 19 and PMT ``k`` belongs
    to module ``k // 19`` as channel ``k % 19``.

    The 2D image map places every *module* (or single PMT) on one pixel: barrel unrolled in azimuth,
    end caps above (top, +y) and below (bottom, -y). PMT ``k`` lands on flat pixel
    ``image_pixel[k]`` (row * width + col) in image channel ``image_channel[k]`` (``k % 19`` for mPMTs,
    0 for single PMTs). No two PMTs share a (pixel, channel) pair.
    """

    family: ClassVar[str] = "water_cherenkov"
    simulator_target: ClassVar[str] = "recoml.families.water_cherenkov.to_store.simulate_to_store"
    augmentation_target: ClassVar[str | None] = "recoml.families.water_cherenkov.augment.exact_symmetries"

    name: str
    radius: float
    half_height: float
    pmt_positions: np.ndarray  # (P, 3) float32, cm
    pmt_directions: np.ndarray  # (P, 3) float32, unit, facing into the tank
    pmt_radius: float  # photocathode radius, cm (for solid angle)
    pmts_per_module: int  # 19 for mPMTs, 1 for single PMTs
    image_pixel: np.ndarray | None  # (P,) int64, flat pixel index row * width + col; None: no image map
    image_shape: tuple[int, int] | None  # (height, width) in pixels
    pmt_location: np.ndarray | None = None  # (P,) int8: 0 top cap, 1 barrel, 2 bottom cap (None: derived)
    # The file's identifiers of each PMT, (P, K) int64 named by sensor_id_names (e.g. ("tube",) or
    # ("tube", "mpmt", "pmt")); converters map hit identifiers to PMT indices with them. Default: the
    # 1-based tube number k + 1, as WCSim numbers tubes.
    sensor_ids: np.ndarray | None = None
    sensor_id_names: tuple[str, ...] = ("tube",)
    image_map_note: str = ""  # why there is no image map (image_pixel None)
    #: The module drawing this family's events (:mod:`recoml.plotting.events`).
    event_display: ClassVar[str] = "recoml.families.water_cherenkov.display"

    def __post_init__(self) -> None:
        n = len(self.pmt_positions)
        for name in ("pmt_positions", "pmt_directions"):
            if getattr(self, name).shape != (n, 3):
                raise GeometryError(f"detector {self.name}: {name} must have shape ({n}, 3)")
        if self.image_pixel is not None and self.image_pixel.shape != (n,):
            raise GeometryError(f"detector {self.name}: image_pixel must have shape ({n},)")
        if n % self.pmts_per_module:
            raise GeometryError(
                f"detector {self.name}: {n} PMTs is not a whole number of modules of {self.pmts_per_module}"
            )
        if self.pmt_location is None:
            object.__setattr__(self, "pmt_location", _locate(self.pmt_positions, self.half_height))
        if self.sensor_ids is None:
            object.__setattr__(self, "sensor_ids", np.arange(1, n + 1, dtype=np.int64)[:, None])
        assert self.sensor_ids is not None  # set just above when not given
        if self.sensor_ids.shape != (n, len(self.sensor_id_names)):
            raise GeometryError(
                f"detector {self.name}: sensor_ids must have shape ({n}, {len(self.sensor_id_names)}) "
                f"for identifiers {self.sensor_id_names}"
            )

    @property
    def n_pmts(self) -> int:
        return len(self.pmt_positions)

    @property
    def n_sensors(self) -> int:
        return self.n_pmts

    @property
    def sensor_positions(self) -> np.ndarray:
        return self.pmt_positions

    @property
    def sensor_directions(self) -> np.ndarray:
        return self.pmt_directions

    def feature_scales(self) -> dict[str, tuple[float, float]]:
        """Positions over the tank size, unit directions."""
        r, h = float(self.radius), float(self.half_height)
        unit = (0.0, 1.0)
        return {"x": (0.0, r), "y": (0.0, h), "z": (0.0, r), "dir_x": unit, "dir_y": unit, "dir_z": unit}

    def aux_truth(self, truth: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Distance from the true vertex to the wall, and along the true direction (``towall``), cm."""
        out: dict[str, np.ndarray] = {}
        vertex, direction = truth.get("aux_vertex"), truth.get("aux_direction")
        if vertex is not None:
            out["aux_dwall"] = distance_to_wall(vertex, self.radius, self.half_height).astype(np.float32)
            if direction is not None:
                out["aux_towall"] = towall(vertex, direction, self.radius, self.half_height).astype(
                    np.float32
                )
        return out

    @property
    def n_modules(self) -> int:
        return self.n_pmts // self.pmts_per_module

    @property
    def module_id(self) -> np.ndarray:
        return np.arange(self.n_pmts) // self.pmts_per_module

    @property
    def image_channel(self) -> np.ndarray:
        """Channel of each PMT inside its module's pixel (0 for single-PMT detectors)."""
        return np.arange(self.n_pmts) % self.pmts_per_module


def _locate(positions: np.ndarray, half_height: float) -> np.ndarray:
    """Cap or barrel, from the height: within 1% of the top/bottom plane counts as a cap."""
    y = positions[:, 1]
    tol = 0.01 * half_height + 1.0
    loc = np.ones(len(y), dtype=np.int8)
    loc[y > half_height - tol] = 0
    loc[y < -half_height + tol] = 2
    return loc
