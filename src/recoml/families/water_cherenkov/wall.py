"""Constant-time lookup from a point on the tank wall to the PMT whose photocathode covers it.

Photon tracing ends on the cylinder wall; finding the PMT there with a k-d tree per photon would cost
about a microsecond each, far too slow for millions of photons per second. Instead the wall is
rasterised once per detector into cells a third of the collection radius wide (coarser if the table
would exceed ``MAX_CELLS``), each holding the PMT whose collection disk contains the cell centre (the
nearest one where disks overlap, as for the 19 PMTs of an mPMT projected onto the wall) or -1; a
photon then costs a few integer operations and two table lookups. Averaged over cell offsets the
rasterised disk has the true area; its edge is resolved to a cell.

Cell addressing: the end caps use a square (x, z) grid; barrel points also fall in an (x, z) cell, which
``slot`` maps to a column of barrel cells stacked along y. All indices are computed with float32
arithmetic and clipped, so stray (invalid) photons can never index out of range.
"""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree

from recoml.families.water_cherenkov.detector import WCDetector

log = logging.getLogger(__name__)

# Table size limit (int16 entries: 16 MB); a bigger detector gets coarser cells.
MAX_CELLS = 8_000_000


@dataclass(frozen=True, eq=False)
class WallMap:
    """Rasterised PMT coverage of a cylinder wall (see the module docstring)."""

    radius: float
    half_height: float
    cell: float
    n: int  # (x, z) grid is n x n cells starting at -(radius + cell)
    ny: int  # barrel cells along y, starting at -(half_height + cell)
    slot: np.ndarray  # (n*n,) int16/int32: barrel slot of each (x, z) cell, 0 = dead slot (no barrel there)
    table: np.ndarray  # (2*n*n + n_slots*ny,) int16/int32 PMT or -1: top cap, bottom cap, barrel cells
    wall_pos: np.ndarray  # (P, 3) float32 PMT centres projected onto the wall
    pmt_dir: np.ndarray  # (P, 3) float32 inward facing directions
    collection_radius: float
    # Contiguous columns of wall_pos and pmt_dir, set by __post_init__.
    wall_x: np.ndarray = field(init=False, repr=False)
    wall_y: np.ndarray = field(init=False, repr=False)
    wall_z: np.ndarray = field(init=False, repr=False)
    dir_x: np.ndarray = field(init=False, repr=False)
    dir_y: np.ndarray = field(init=False, repr=False)
    dir_z: np.ndarray = field(init=False, repr=False)
    # Index in ``table`` of the first barrel cell of each (x, z) cell's slot: slot * ny + 2 n^2 (int32).
    slot_start: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # contiguous columns: np.take on them is much faster than fancy-indexing an (P, 3) array
        for name, arr in (("wall", self.wall_pos), ("dir", self.pmt_dir)):
            for i, axis in enumerate("xyz"):
                object.__setattr__(self, f"{name}_{axis}", np.ascontiguousarray(arr[:, i]))
        # two integer passes per photon fewer in candidates()
        start = self.slot.astype(np.int32) * np.int32(self.ny) + np.int32(2 * self.n * self.n)
        object.__setattr__(self, "slot_start", start)

    @property
    def n_pmts(self) -> int:
        return len(self.wall_pos)

    def candidates(
        self, fx: np.ndarray, fy: np.ndarray, fz: np.ndarray, barrel: np.ndarray, down: np.ndarray
    ) -> np.ndarray:
        """PMT (or -1) at wall points given in cell coordinates: (x + radius + cell) / cell, likewise z,
        and (y + half_height + cell) / cell; ``barrel``/``down`` say which surface (barrel / bottom cap)
        was hit."""
        i32 = np.int32
        with np.errstate(invalid="ignore"):
            # Valid wall points always fall inside the grid (one cell of padding); garbage from invalid
            # photons (NaN, far away) only has to stay in bounds, which mode="wrap" guarantees.
            xi = fx.astype(i32)
            zi = fz.astype(i32)
            yi = fy.astype(i32)
        cap = xi
        cap *= i32(self.n)
        cap += zi
        bar = np.take(self.slot_start, cap, mode="wrap")
        bar += yi
        cap += down.view(np.int8) * i32(self.n * self.n)
        # key = cap + barrel * (bar - cap), without the (slow) np.where
        bar -= cap
        bar *= barrel.view(np.int8)
        cap += bar
        return np.take(self.table, cap, mode="wrap")

    def lookup(self, points: np.ndarray, barrel: np.ndarray) -> np.ndarray:
        """PMT (or -1) at wall points ``(N, 3)`` in cm (for tests and debugging)."""
        p = np.asarray(points, dtype=np.float32)
        f = p + np.float32(self.cell) + np.array([self.radius, self.half_height, self.radius], np.float32)
        f /= np.float32(self.cell)
        return self.candidates(f[:, 0], f[:, 1], f[:, 2], np.asarray(barrel, bool), p[:, 1] < 0)


_CACHE: weakref.WeakKeyDictionary[WCDetector, dict[float, WallMap]] = weakref.WeakKeyDictionary()


def wall_map(detector: WCDetector, collection_radius: float) -> WallMap:
    """The (cached) :class:`WallMap` of ``detector`` for a given collection radius (cm)."""
    per_det = _CACHE.setdefault(detector, {})
    key = float(collection_radius)
    if key not in per_det:
        per_det[key] = build_wall_map(detector, key)
    return per_det[key]


def project_to_wall(detector: WCDetector) -> np.ndarray:
    """PMT centres moved onto the wall surface they sit on (barrel: radius R; caps: y = +-H)."""
    pos = np.asarray(detector.pmt_positions, dtype=np.float64).copy()
    loc = np.asarray(detector.pmt_location)
    barrel = loc == 1
    rho = np.hypot(pos[barrel, 0], pos[barrel, 2])
    pos[barrel, 0] *= detector.radius / rho
    pos[barrel, 2] *= detector.radius / rho
    pos[loc == 0, 1] = detector.half_height
    pos[loc == 2, 1] = -detector.half_height
    return pos


def build_wall_map(detector: WCDetector, collection_radius: float) -> WallMap:
    """Rasterise the wall of ``detector`` (see the module docstring); a one-off cost of ~0.1-2 s."""
    r_tank, h_tank = float(detector.radius), float(detector.half_height)
    cell = collection_radius / 3.0
    while True:
        n = int(np.ceil(2.0 * (r_tank + cell) / cell))
        ny = int(np.ceil(2.0 * (h_tank + cell) / cell))
        n_slots_est = int(1.5 * 2 * np.pi * r_tank / cell) + 1
        if 2 * n * n + n_slots_est * ny <= MAX_CELLS:
            break
        cell *= 1.25
    centres = -(r_tank + cell) + (np.arange(n) + 0.5) * cell
    xc, zc = np.meshgrid(centres, centres, indexing="ij")
    xc, zc = xc.ravel(), zc.ravel()
    rho = np.hypot(xc, zc)
    # Barrel slots: (x, z) cells the circle passes through (a cell's corner is cell/sqrt(2) from its centre).
    on_circle = np.abs(rho - r_tank) <= cell * 0.7072 + 1e-4 * r_tank
    n_slots = int(on_circle.sum()) + 1
    slot = np.zeros(n * n, dtype=np.int16 if n_slots <= np.iinfo(np.int16).max else np.int32)
    slot[on_circle] = np.arange(1, n_slots)
    yc = -(h_tank + cell) + (np.arange(ny) + 0.5) * cell

    wall_pos = project_to_wall(detector)
    tree = cKDTree(wall_pos)

    dtype = np.int16 if detector.n_pmts < np.iinfo(np.int16).max else np.int32

    def nearest(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
        """PMT whose collection disk holds each point (nearest one), in chunks to bound memory."""
        out = np.empty(len(x), dtype=dtype)
        step = 1 << 20
        for i in range(0, len(x), step):
            sl = slice(i, i + step)
            _, idx = tree.query(np.stack([x[sl], y[sl], z[sl]], -1), distance_upper_bound=collection_radius)
            out[sl] = np.where(idx < len(wall_pos), idx, -1)
        return out

    top = nearest(xc, np.full_like(xc, h_tank), zc)
    bottom = nearest(xc, np.full_like(xc, -h_tank), zc)
    sx = xc[on_circle] * r_tank / rho[on_circle]
    sz = zc[on_circle] * r_tank / rho[on_circle]
    barrel = nearest(np.repeat(sx, ny), np.tile(yc, len(sx)), np.repeat(sz, ny))
    table = np.concatenate([top, bottom, np.full(ny, -1, dtype), barrel])
    log.debug(
        "wall map for %s: cell %.2f cm, %d cells, %d with a PMT",
        detector.name,
        cell,
        len(table),
        int((table >= 0).sum()),
    )
    return WallMap(
        radius=r_tank,
        half_height=h_tank,
        cell=cell,
        n=n,
        ny=ny,
        slot=slot,
        table=table,
        wall_pos=wall_pos.astype(np.float32),
        pmt_dir=np.asarray(detector.pmt_directions, dtype=np.float32),
        collection_radius=float(collection_radius),
    )
