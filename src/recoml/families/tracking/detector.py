"""Silicon trackers: barrel layers (cylinders around the beam, ``z`` axis) and end-cap disks in a solenoid.

Units are the TrackML ones: mm, GeV, tesla. A layer is addressed by TrackML's ``(volume_id, layer_id)``
pair (what hits carry) and by a dense global index ``0..L-1`` ordered by ``(volume_id, layer_id)`` (what
graph construction uses). Modules have 1-based ``module_id`` within their layer and a dense global index
``module_offset[layer] + module_id - 1`` (what a module map uses).

Two sources: :func:`build_tracker` lays out a toy detector from a few numbers per volume (module ids from
a regular phi x z / phi x ring grid); :func:`load_trackml_detector` reads the real TrackML
``detectors.csv`` (module ids are the file's; a simulated hit gets the id of the nearest module centre).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from recoml.contracts.detector import Detector
from recoml.errors import ConfigError, GeometryError
from recoml.families.tracking.trackml import read_trackml_detectors

__all__ = [
    "BARREL",
    "DISK",
    "TrackerDetector",
    "TrackerLayer",
    "build_tracker",
    "load_trackml_detector",
]

log = logging.getLogger(__name__)

BARREL, DISK = 0, 1
#: GeV / (T mm): pT = K * B * R for a unit charge on a circle of radius R.
K_GEV_PER_T_MM = 0.299792458e-3


@dataclass(frozen=True)
class TrackerLayer:
    """One sensitive surface. Barrel: ``radius`` and ``half_length``; disk: ``z``, ``r_min``, ``r_max``.

    ``n_phi`` x ``n_long`` is the module grid (``n_long``: modules along z for a barrel, rings for a
    disk); ``resolution`` = (sigma along r-phi, sigma along z for a barrel or r for a disk), mm.
    """

    volume_id: int
    layer_id: int
    kind: int
    radius: float = 0.0
    half_length: float = 0.0
    z: float = 0.0
    r_min: float = 0.0
    r_max: float = 0.0
    n_phi: int = 1
    n_long: int = 1
    resolution: tuple[float, float] = (0.0, 0.0)

    @property
    def n_modules(self) -> int:
        return self.n_phi * self.n_long

    @property
    def area(self) -> float:
        if self.kind == BARREL:
            return 2 * math.pi * self.radius * 2 * self.half_length
        return math.pi * (self.r_max**2 - self.r_min**2)


class TrackerDetector(Detector):
    """A tracker as per-layer arrays (vectorized propagation, on-device lookups).

    Its sensors are the modules (``module_centers``) when the geometry has them, else the layers (a
    reference point per layer: barrel radius at z = 0, disk middle radius at the disk's z).
    ``radius``/``half_height`` are the envelope (outermost barrel radius or disk edge, outermost |z|), used
    to scale coordinates. ``module_centers`` (global module index -> centre, ``(M, 3)``, NaN where
    unknown) is set for real geometries: simulated hits then take the nearest module's id.
    """

    family: ClassVar[str] = "tracking"
    simulator_target: ClassVar[str] = "recoml.families.tracking.simulation.simulate_tracker_to_store"
    #: The module drawing this family's events (:mod:`recoml.plotting.events`).
    event_display: ClassVar[str] = "recoml.families.tracking.display"

    def __init__(
        self,
        name: str,
        bfield: float,
        layers: Sequence[TrackerLayer],
        module_centers: np.ndarray | None = None,
        source: str | None = None,
    ) -> None:
        if not layers:
            raise GeometryError(f"tracker '{name}': no layers")
        if not bfield > 0:
            raise GeometryError(f"tracker '{name}': bfield must be > 0 T, got {bfield}")
        layers = sorted(layers, key=lambda l: (l.volume_id, l.layer_id))
        keys = [(l.volume_id, l.layer_id) for l in layers]
        if len(set(keys)) != len(keys):
            dup = next(k for k in keys if keys.count(k) > 1)
            raise GeometryError(f"tracker '{name}': layer (volume_id, layer_id) = {dup} appears twice")
        for l in layers:
            _check_layer(name, l)
        self.name = name
        self.bfield = float(bfield)
        self.layers: tuple[TrackerLayer, ...] = tuple(layers)
        self.source = source
        f = np.array
        self.volume_id = f([l.volume_id for l in layers], dtype=np.int64)
        self.layer_id = f([l.layer_id for l in layers], dtype=np.int64)
        self.is_disk = f([l.kind == DISK for l in layers], dtype=bool)
        self.layer_radius = f([l.radius for l in layers], dtype=np.float64)
        self.layer_half_length = f([l.half_length for l in layers], dtype=np.float64)
        self.layer_z = f([l.z for l in layers], dtype=np.float64)
        self.layer_r_min = f([l.radius if l.kind == BARREL else l.r_min for l in layers], dtype=np.float64)
        self.layer_r_max = f([l.radius if l.kind == BARREL else l.r_max for l in layers], dtype=np.float64)
        self.layer_z_min = f([-l.half_length if l.kind == BARREL else l.z for l in layers], dtype=np.float64)
        self.layer_z_max = f([l.half_length if l.kind == BARREL else l.z for l in layers], dtype=np.float64)
        self.n_phi = f([l.n_phi for l in layers], dtype=np.int64)
        self.n_long = f([l.n_long for l in layers], dtype=np.int64)
        self.resolution = f([l.resolution for l in layers], dtype=np.float64).reshape(-1, 2)
        self.module_offset = np.zeros(len(layers) + 1, dtype=np.int64)
        np.cumsum([l.n_modules for l in layers], out=self.module_offset[1:])
        self.lookup = np.full((int(self.volume_id.max()) + 1, int(self.layer_id.max()) + 1), -1, np.int64)
        self.lookup[self.volume_id, self.layer_id] = np.arange(len(layers))
        if module_centers is not None and module_centers.shape != (self.n_modules, 3):
            raise GeometryError(
                f"tracker '{name}': module_centers has shape {module_centers.shape}, "
                f"expected ({self.n_modules}, 3)"
            )
        self.module_centers = module_centers
        self._trees: dict[int, Any] = {}

    # -- the Detector contract -------------------------------------------------------------------------
    @property
    def n_sensors(self) -> int:
        return self.n_modules if self.module_centers is not None else self.n_layers

    @property
    def sensor_positions(self) -> np.ndarray:
        if self.module_centers is not None:
            return np.nan_to_num(self.module_centers).astype(np.float32)
        r = np.where(self.is_disk, 0.5 * (self.layer_r_min + self.layer_r_max), self.layer_radius)
        z = np.where(self.is_disk, self.layer_z, 0.0)
        return np.stack([r, np.zeros_like(r), z], axis=1).astype(np.float32)

    @property
    def sensor_directions(self) -> np.ndarray:
        """Tracker modules have no facing direction the representations use: zeros."""
        return np.zeros((self.n_sensors, 3), dtype=np.float32)

    def feature_scales(self) -> dict[str, tuple[float, float]]:
        """Coordinates over the envelope (mm)."""
        r, h = float(self.radius), float(self.half_height)
        return {"x": (0.0, r), "y": (0.0, r), "z": (0.0, h)}

    # -- sizes ----------------------------------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        return len(self.layers)

    @property
    def n_modules(self) -> int:
        return int(self.module_offset[-1])

    @property
    def radius(self) -> float:
        """Outer radius of the sensitive envelope (mm)."""
        return float(self.layer_r_max.max())

    @property
    def half_height(self) -> float:
        """Outer |z| of the sensitive envelope (mm)."""
        return float(np.abs(np.concatenate([self.layer_z_min, self.layer_z_max])).max())

    def radius_of_curvature(self, pt: np.ndarray | float, charge: np.ndarray | float = 1.0) -> np.ndarray:
        """Helix radius in the transverse plane (mm) of a particle of ``pt`` (GeV) in this field."""
        return np.asarray(pt, dtype=np.float64) / (K_GEV_PER_T_MM * self.bfield * np.abs(charge))

    # -- ids ------------------------------------------------------------------------------------------
    def layer_index(self, volume_id: np.ndarray, layer_id: np.ndarray, where: str = "hits") -> np.ndarray:
        """Global layer index of every ``(volume_id, layer_id)``; GeometryError for a pair not in the
        detector."""
        vol = np.asarray(volume_id, dtype=np.int64)
        lay = np.asarray(layer_id, dtype=np.int64)
        inside = (vol >= 0) & (vol < self.lookup.shape[0]) & (lay >= 0) & (lay < self.lookup.shape[1])
        out = np.full(vol.shape, -1, dtype=np.int64)
        out[inside] = self.lookup[vol[inside], lay[inside]]
        if (out < 0).any():
            i = int(np.flatnonzero(out < 0)[0])
            raise GeometryError(
                f"{where}: (volume_id, layer_id) = ({int(vol.flat[i])}, {int(lay.flat[i])}) is not a layer "
                f"of detector '{self.name}' ({int((out < 0).sum())} such hits); the geometry does not match "
                "the data"
            )
        return out

    def module_index(self, layer: np.ndarray, module_id: np.ndarray) -> np.ndarray:
        """Dense global module index from the global layer index and the 1-based module id."""
        layer = np.asarray(layer, dtype=np.int64)
        module_id = np.asarray(module_id, dtype=np.int64)
        n = self.module_offset[layer + 1] - self.module_offset[layer]
        if ((module_id < 1) | (module_id > n)).any():
            i = int(np.flatnonzero((module_id < 1) | (module_id > n))[0])
            raise GeometryError(
                f"module_id {int(module_id.flat[i])} outside 1..{int(n.flat[i])} on layer "
                f"(volume {int(self.volume_id[layer.flat[i]])}, layer {int(self.layer_id[layer.flat[i]])}) "
                f"of detector '{self.name}'"
            )
        return self.module_offset[layer] + module_id - 1

    def module_of(self, layer: np.ndarray, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """1-based module id of points on their layers: nearest module centre when the geometry has centres,
        else the cell of the layer's regular grid."""
        layer = np.asarray(layer, dtype=np.int64)
        if self.module_centers is not None:
            return self._nearest_module(layer, x, y, z)
        phi = np.arctan2(y, x)
        iphi = np.clip(((phi + np.pi) / (2 * np.pi) * self.n_phi[layer]).astype(np.int64), 0, None)
        iphi = np.minimum(iphi, self.n_phi[layer] - 1)
        disk = self.is_disk[layer]
        r = np.hypot(x, y)
        lo = np.where(disk, self.layer_r_min[layer], -self.layer_half_length[layer])
        hi = np.where(disk, self.layer_r_max[layer], self.layer_half_length[layer])
        u = np.where(disk, r, z)
        ilong = np.floor((u - lo) / np.maximum(hi - lo, 1e-9) * self.n_long[layer]).astype(np.int64)
        ilong = np.clip(ilong, 0, self.n_long[layer] - 1)
        return 1 + ilong * self.n_phi[layer] + iphi

    def _nearest_module(self, layer: np.ndarray, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        from scipy.spatial import cKDTree

        assert self.module_centers is not None
        out = np.zeros(layer.shape, dtype=np.int64)
        points = np.stack([x, y, z], axis=-1)
        for lay in np.unique(layer):
            lay = int(lay)
            if lay not in self._trees:
                a, b = self.module_offset[lay], self.module_offset[lay + 1]
                centers = self.module_centers[a:b]
                known = np.flatnonzero(np.isfinite(centers[:, 0]))
                self._trees[lay] = (cKDTree(centers[known]), known)
            tree, known = self._trees[lay]
            sel = layer == lay
            _, idx = tree.query(points[sel])
            out[sel] = known[idx] + 1
        return out

    def describe(self) -> dict[str, Any]:
        """Plain-data summary (store attributes, logs)."""
        return {
            "name": self.name,
            "bfield": self.bfield,
            "n_layers": self.n_layers,
            "n_modules": self.n_modules,
            "source": self.source,
        }

    def __repr__(self) -> str:
        n_disk = int(self.is_disk.sum())
        return (
            f"TrackerDetector(name={self.name!r}, bfield={self.bfield} T, "
            f"barrel layers={self.n_layers - n_disk}, "
            f"disks={n_disk}, modules={self.n_modules})"
        )


def _check_layer(name: str, l: TrackerLayer) -> None:
    where = f"tracker '{name}' layer (volume {l.volume_id}, layer {l.layer_id})"
    if l.kind == BARREL:
        if not (l.radius > 0 and l.half_length > 0):
            raise GeometryError(f"{where}: a barrel layer needs radius > 0 and half_length > 0")
    elif l.kind == DISK:
        if not (0 <= l.r_min < l.r_max):
            raise GeometryError(f"{where}: a disk needs 0 <= r_min < r_max, got {l.r_min}, {l.r_max}")
    else:
        raise GeometryError(f"{where}: kind must be {BARREL} (barrel) or {DISK} (disk), got {l.kind}")
    if l.n_phi < 1 or l.n_long < 1:
        raise GeometryError(f"{where}: module grid must be at least 1 x 1")
    if min(l.resolution) < 0:
        raise GeometryError(f"{where}: resolution must be >= 0, got {l.resolution}")


def build_tracker(
    name: str,
    bfield: float,
    volumes: Sequence[Mapping[str, Any]],
) -> TrackerDetector:
    """A toy tracker from volume descriptions (what ``recoml/conf/detector/toy_tracker.yaml`` holds).

    Each volume: ``volume_id``, ``kind`` (``barrel``/``endcap``), ``module_size`` ``[width, length]`` (mm;
    width along r-phi, length along z for barrels and along r for disks), ``resolution`` ``[r-phi, z or
    r]``; a barrel adds ``radii`` and ``half_length``; an end-cap adds ``z`` (disk positions), ``r_min``,
    ``r_max``. Layer ids are 2, 4, 6, ... in order of radius (barrels) or of z (disks), as in TrackML.
    """
    layers: list[TrackerLayer] = []
    for vol in volumes:
        vid = int(vol["volume_id"])
        kind = str(vol.get("kind", "barrel"))
        width, length = (float(v) for v in vol.get("module_size", (50.0, 100.0)))
        if not (width > 0 and length > 0):
            raise GeometryError(f"tracker '{name}' volume {vid}: module_size must be positive")
        res = tuple(float(v) for v in vol.get("resolution", (0.0, 0.0)))
        if len(res) != 2:
            raise GeometryError(f"tracker '{name}' volume {vid}: resolution needs two numbers [r-phi, long]")
        if kind == "barrel":
            hl = float(vol["half_length"])
            for i, r in enumerate(sorted(float(v) for v in vol["radii"])):
                layers.append(
                    TrackerLayer(
                        vid,
                        2 * (i + 1),
                        BARREL,
                        radius=r,
                        half_length=hl,
                        n_phi=max(1, math.ceil(2 * math.pi * r / width)),
                        n_long=max(1, math.ceil(2 * hl / length)),
                        resolution=res,
                    )
                )
        elif kind == "endcap":
            r0, r1 = float(vol["r_min"]), float(vol["r_max"])
            for i, z in enumerate(sorted(float(v) for v in vol["z"])):
                layers.append(
                    TrackerLayer(
                        vid,
                        2 * (i + 1),
                        DISK,
                        z=z,
                        r_min=r0,
                        r_max=r1,
                        n_phi=max(1, math.ceil(2 * math.pi * 0.5 * (r0 + r1) / width)),
                        n_long=max(1, math.ceil((r1 - r0) / length)),
                        resolution=res,
                    )
                )
        else:
            raise GeometryError(
                f"tracker '{name}' volume {vid}: kind must be 'barrel' or 'endcap', got '{kind}'"
            )
    return TrackerDetector(name, bfield, layers, source="toy")


def load_trackml_detector(
    path: str | os.PathLike | None, name: str = "trackml", bfield: float = 2.0
) -> TrackerDetector:
    """The real TrackML detector from ``detectors.csv[.gz]`` (a file, or a directory holding it).

    ``path`` has no default (``None`` is refused in one sentence): the file is the user's, not the package's.

    A layer whose module centres spread more along z than along r is a barrel (radius: mean centre radius;
    half-length: outermost centre |z| plus the module half-length); otherwise a disk (z: mean centre z;
    radii: centre radii -/+ the module half-length). Resolutions are pitch / sqrt(12) averaged over the
    layer's modules; the module centres are kept (nearest-module ids for simulated hits).
    """
    if path is None or str(path) == "":
        raise ConfigError(
            "detector=trackml needs the TrackML detector description: "
            "set detector.path=/path/to/detectors.csv.gz"
        )
    table = read_trackml_detectors(path)
    table = table.sort_values(["volume_id", "layer_id", "module_id"]).reset_index(drop=True)
    r = np.hypot(table["cx"].to_numpy(), table["cy"].to_numpy())
    table = table.assign(r=r)
    layers: list[TrackerLayer] = []
    centers: list[np.ndarray] = []
    for (vid, lid), g in table.groupby(["volume_id", "layer_id"], sort=True):
        hv = float(g["module_hv"].max())
        n = int(g["module_id"].max())
        if int(g["module_id"].min()) < 1:
            raise GeometryError(f"{path}: volume {vid} layer {lid} has module_id < 1; TrackML ids start at 1")
        res = (float(g["pitch_u"].mean()) / math.sqrt(12), float(g["pitch_v"].mean()) / math.sqrt(12))
        z_spread = float(g["cz"].max() - g["cz"].min())
        r_spread = float(g["r"].max() - g["r"].min())
        if z_spread > r_spread:
            radius = float(g["r"].mean())
            n_long = int(np.unique(np.round(g["cz"].to_numpy(), 0)).size)
            layer = TrackerLayer(
                int(vid),
                int(lid),
                BARREL,
                radius=radius,
                half_length=float(g["cz"].abs().max()) + hv,
                n_phi=max(1, n // max(1, n_long)),
                n_long=max(1, n_long),
                resolution=res,
            )
        else:
            layer = TrackerLayer(
                int(vid),
                int(lid),
                DISK,
                z=float(g["cz"].mean()),
                r_min=max(0.0, float(g["r"].min()) - hv),
                r_max=float(g["r"].max()) + hv,
                n_phi=n,
                n_long=1,
                resolution=res,
            )
        # Module grid size must equal the largest module id so that global indices are dense.
        if layer.n_modules != n:
            layer = TrackerLayer(**{**layer.__dict__, "n_phi": n, "n_long": 1})
        layers.append(layer)
        c = np.full((n, 3), np.nan)
        c[g["module_id"].to_numpy() - 1] = g[["cx", "cy", "cz"]].to_numpy()
        centers.append(c)
    det = TrackerDetector(name, bfield, layers, module_centers=np.concatenate(centers), source=str(path))
    log.info("read %s: %r", path, det)
    return det
