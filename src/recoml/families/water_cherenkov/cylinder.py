"""Generate a water-Cherenkov cylinder's photosensor layout from a handful of parameters.

Layout: ``barrel_rows`` x ``barrel_columns`` modules on the barrel (row 0 at the top), and on each end
cap the points of a square grid of pitch ``cap_spacing`` whose centres lie within ``cap_radius`` of the
axis. A module is one 20-inch PMT (``pmts_per_module=1``) or an mPMT of 19 small PMTs on a dome
(12 on an outer ring, 6 on an inner ring, 1 in the centre: WCTE's channel order).
The image map stacks the top cap grid, the unrolled barrel and the bottom cap grid, so every module has
its own pixel by construction.
"""

from __future__ import annotations

import numpy as np

from recoml.errors import GeometryError
from recoml.families.water_cherenkov.detector import WCDetector

# mPMT dome: (ring polar angle in degrees, number of PMTs) in channel order, outer ring first.
MPMT_RINGS: tuple[tuple[float, int], ...] = ((38.0, 12), (19.0, 6), (0.0, 1))


def build_cylinder(
    name: str,
    radius: float,
    half_height: float,
    barrel_rows: int,
    barrel_columns: int,
    cap_grid: int,
    cap_spacing: float,
    cap_radius: float,
    pmts_per_module: int = 1,
    pmt_radius: float = 25.4,
    module_radius: float = 0.0,
) -> WCDetector:
    """Build a :class:`WCDetector` (cm, tank axis y) from layout parameters (see the module docstring)."""
    if cap_grid % 2 == 0 or cap_grid > barrel_columns:
        raise GeometryError(f"detector {name}: cap_grid must be odd and <= barrel_columns, got {cap_grid}")
    if pmts_per_module not in (1, sum(n for _, n in MPMT_RINGS)):
        raise GeometryError(f"detector {name}: pmts_per_module must be 1 or 19, got {pmts_per_module}")

    centres, normals, tangents, rows, cols = [], [], [], [], []
    half = cap_grid // 2
    width = barrel_columns
    col0 = width // 2 - half

    # Cap grid points inside cap_radius; same (i, j) pattern on both caps.
    ij = np.stack(np.meshgrid(np.arange(-half, half + 1), np.arange(-half, half + 1), indexing="ij"), -1)
    ij = ij.reshape(-1, 2)
    ij = ij[np.hypot(ij[:, 0], ij[:, 1]) * cap_spacing <= cap_radius]
    for y, row_base, facing in ((half_height, 0, -1.0), (-half_height, cap_grid + barrel_rows, 1.0)):
        x = ij[:, 1] * cap_spacing
        z = ij[:, 0] * cap_spacing
        n = len(ij)
        centres.append(np.stack([x, np.full(n, y), z], -1))
        normals.append(np.tile([0.0, facing, 0.0], (n, 1)))
        tangents.append(np.tile([1.0, 0.0, 0.0], (n, 1)))
        rows.append(row_base + half + ij[:, 0] * (1 if facing < 0 else -1))
        cols.append(col0 + half + ij[:, 1])

    # Barrel: row 0 at the top, azimuth phi = atan2(z, x) increasing with the column.
    r_grid, c_grid = np.meshgrid(np.arange(barrel_rows), np.arange(barrel_columns), indexing="ij")
    r_idx, c_idx = r_grid.ravel(), c_grid.ravel()
    pitch = 2 * half_height / barrel_rows
    yb = half_height - (r_idx + 0.5) * pitch
    phi = 2 * np.pi * (c_idx + 0.5) / barrel_columns
    barrel = np.stack([radius * np.cos(phi), yb, radius * np.sin(phi)], -1)
    centres.insert(1, barrel)
    normals.insert(1, np.stack([-np.cos(phi), np.zeros_like(phi), -np.sin(phi)], -1))
    tangents.insert(1, np.tile([0.0, 1.0, 0.0], (len(phi), 1)))
    rows.insert(1, cap_grid + r_idx)
    cols.insert(1, c_idx)

    centre = np.concatenate(centres)
    normal = np.concatenate(normals)
    tangent = np.concatenate(tangents)
    pixel = np.concatenate(rows) * width + np.concatenate(cols)
    positions, directions = _place_pmts(centre, normal, tangent, pmts_per_module, module_radius)
    return WCDetector(
        name=name,
        radius=float(radius),
        half_height=float(half_height),
        pmt_positions=positions.astype(np.float32),
        pmt_directions=directions.astype(np.float32),
        pmt_radius=float(pmt_radius),
        pmts_per_module=pmts_per_module,
        image_pixel=np.repeat(pixel, pmts_per_module).astype(np.int64),
        image_shape=(2 * cap_grid + barrel_rows, width),
    )


def _place_pmts(
    centre: np.ndarray, normal: np.ndarray, tangent: np.ndarray, per_module: int, module_radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """Positions and facing directions of every PMT: the module itself, or the 19 PMTs of its dome."""
    if per_module == 1:
        return centre, normal
    bitangent = np.cross(normal, tangent)
    offsets, tilts = [], []
    for polar_deg, count in MPMT_RINGS:
        theta = np.deg2rad(polar_deg)
        az = 2 * np.pi * (np.arange(count) + 0.5 * (count == 6)) / count
        radial = np.cos(az)[:, None, None] * tangent + np.sin(az)[:, None, None] * bitangent  # (k, M, 3)
        offsets.append(module_radius * np.sin(theta) * radial)
        tilts.append(np.cos(theta) * normal + np.sin(theta) * radial)
    off = np.concatenate(offsets).transpose(1, 0, 2)  # (M, 19, 3)
    tilt = np.concatenate(tilts).transpose(1, 0, 2)
    pos = (centre[:, None, :] + off).reshape(-1, 3)
    dirs = tilt.reshape(-1, 3)
    return pos, dirs / np.linalg.norm(dirs, axis=1, keepdims=True)
