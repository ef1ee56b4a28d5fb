"""2D image maps for detectors read from files: one pixel per module, computed from module positions.

The layout is the one :func:`recoml.families.water_cherenkov.build_cylinder` makes, so CNNs and augmentations
see the
same picture for generated and real geometries (cm, tank axis y):

* rows ``0 .. n_cap-1``: the top cap (+y) as a square grid, row growing with z, column with x;
* the unrolled barrel, row 0 at the top (largest y), column growing with the azimuth atan2(z, x);
* the bottom cap (-y) as the same square grid mirrored in z (row shrinking with z).

Rows of the barrel are the distinct module heights and cap rows/columns the distinct x / z values, each
merged within half a typical pitch: real files put a few modules slightly off their row (WCSim's
Super-K "extra tower" sits 9 cm off), and merging keeps them on the row they belong to. The map must be
one-to-one; when two modules would share a pixel a :class:`GeometryError` says which.

WatChMaL ships hand-made maps as a CSV grid (``mPMT_to_row_col.csv``); :func:`read_image_map_csv` reads
those and turns them to recoml's orientation.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np

from recoml.errors import GeometryError

log = logging.getLogger(__name__)

TOP, BARREL, BOTTOM = 0, 1, 2


def cylinder_location(
    positions: np.ndarray, directions: np.ndarray | None = None, tolerance: float | None = None
) -> np.ndarray:
    """Top cap (0), barrel (1) or bottom cap (2) of each module, from geometry (tank axis y).

    A module is on a cap when its height is within ``tolerance`` (default 1% of the height extent, at
    least 1 cm) of the highest (lowest) module and, if directions are given, it faces mostly along the
    axis (|d_y| > 0.5). With directions, a module facing along the axis that lies more than
    ``tolerance`` above (below) every module facing sideways is on a cap as well: caps need not be flat
    (WCTE's design bottom cap has 4 modules 2.9 cm below the other 17). Files' own location columns are
    not always right (WCTE's geofile says "barrel" for every tube), so readers check them against this.
    """
    y = np.asarray(positions, dtype=np.float64)[:, 1]
    loc = np.full(len(y), BARREL, dtype=np.int8)
    if len(y) == 0:
        return loc
    if tolerance is None:
        tolerance = max(1.0, 0.01 * float(y.max() - y.min()))
    axial = np.ones(len(y), dtype=bool)
    if directions is not None:
        axial = np.abs(np.asarray(directions, dtype=np.float64)[:, 1]) > 0.5
    top, bottom = y >= y.max() - tolerance, y <= y.min() + tolerance
    if directions is not None and (~axial).any():
        top |= y > y[~axial].max() + tolerance
        bottom |= y < y[~axial].min() - tolerance
    loc[top & axial] = TOP
    loc[bottom & axial] = BOTTOM
    return loc


def image_map_from_positions(
    module_positions: np.ndarray,
    half_height: float,
    radius: float,
    location: np.ndarray | None = None,
) -> tuple[np.ndarray, tuple[int, int]]:
    """Flat pixel ``(M,)`` of every module and the image shape ``(H, W)`` (layout: module docstring).

    ``module_positions`` are module centres (cm, tank axis y; for mPMTs the mean of the 19 PMTs),
    ``location`` the cap/barrel flag per module (0 top, 1 barrel, 2 bottom; derived from the positions
    with :func:`cylinder_location` when not given). ``half_height`` and ``radius`` set the smallest gap
    that still separates two rows or columns (0.1% of the size), so coordinates printed with rounding
    noise fall on the same row.
    """
    pos = np.asarray(module_positions, dtype=np.float64)
    if pos.ndim != 2 or pos.shape[1] != 3 or len(pos) == 0:
        raise GeometryError(f"image map: module_positions must have shape (M, 3) with M > 0, got {pos.shape}")
    loc = cylinder_location(pos) if location is None else np.asarray(location)
    if loc.shape != (len(pos),) or not np.isin(loc, (TOP, BARREL, BOTTOM)).all():
        raise GeometryError(f"image map: location must be ({len(pos)},) values in 0, 1, 2")
    eps = 1e-3 * max(float(half_height), float(radius), 1.0)
    row = np.full(len(pos), -1, dtype=np.int64)
    col = np.full(len(pos), -1, dtype=np.int64)

    barrel = np.flatnonzero(loc == BARREL)
    caps = np.flatnonzero(loc != BARREL)
    n_rows = n_cols = 0
    if len(barrel):
        heights = _cluster(-pos[barrel, 1], eps)  # row 0 at the top
        n_rows = int(heights.max()) + 1
        n_cols = int(np.bincount(heights).max())
        phi = np.arctan2(pos[barrel, 2], pos[barrel, 0])
        # Offset of the column centres: the circular mean of the azimuths modulo the column pitch.
        phi0 = np.angle(np.exp(1j * n_cols * phi).mean()) / n_cols
        step = 2 * np.pi / n_cols
        row[barrel] = heights
        col[barrel] = np.mod(np.round((phi - phi0) / step).astype(np.int64), n_cols)
    n_cap = 0
    if len(caps):
        ix = _cluster(pos[caps, 0], eps)
        iz = _cluster(pos[caps, 2], eps)
        nx, nz = int(ix.max()) + 1, int(iz.max()) + 1
        n_cap = max(nx, nz)
        ix = ix + (n_cap - nx) // 2
        iz = iz + (n_cap - nz) // 2
        top = loc[caps] == TOP
        row[caps] = np.where(top, iz, n_cap + n_rows + (n_cap - 1 - iz))
        col[caps] = ix
    width = max(n_cols, n_cap)
    col[barrel] += (width - n_cols) // 2
    col[caps] += width // 2 - n_cap // 2
    row[barrel] += n_cap
    shape = (2 * n_cap + n_rows, width)
    pixel = row * width + col
    _require_one_to_one(pixel, shape, "image map from positions")
    return pixel, shape


def read_image_map_csv(
    path: str | Path, n_modules: int | None = None, module_positions: np.ndarray | None = None
) -> tuple[np.ndarray, tuple[int, int]]:
    """Read a WatChMaL module -> (row, col) grid CSV; return flat pixel ``(M,)`` and shape ``(H, W)``.

    The CSV holds a header line of column numbers, then one line per image row: the row number, then
    for each column the module id (0-based) or nothing. WatChMaL indexes the image by those row numbers;
    in the IWCD file they grow with height (row 0 is the bottom cap) and the barrel columns shrink with
    the azimuth atan2(z, x). Given ``module_positions`` (module centres, tank axis y), the map is flipped
    so that recoml's convention holds (top at row 0, column growing with the azimuth): for IWCD a
    180-degree turn of WatChMaL's image. Without positions the file's orientation is kept.
    """
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as f:
            lines = list(csv.reader(f))
    except FileNotFoundError as err:
        raise GeometryError(f"{path}: image map file not found") from err
    except (OSError, UnicodeDecodeError) as err:
        raise GeometryError(f"{path}: cannot read the image map CSV ({err})") from err
    lines = [line for line in lines if any(cell.strip() for cell in line)]
    if len(lines) < 2:
        raise GeometryError(f"{path}: image map CSV needs a header line and at least one row")
    width = len(lines[0]) - 1
    labels, cells = [], {}
    for lineno, line in enumerate(lines[1:], start=2):
        if len(line) != width + 1:
            raise GeometryError(f"{path}: line {lineno} has {len(line)} cells, expected {width + 1}")
        try:
            label = int(line[0])
            for c, cell in enumerate(line[1:]):
                if cell.strip():
                    module = int(float(cell))
                    if module in cells:
                        raise GeometryError(f"{path}: module {module} appears twice (line {lineno})")
                    cells[module] = (label, c)
        except ValueError as err:
            raise GeometryError(f"{path}: line {lineno} is not integers ({err})") from err
        labels.append(label)
    height = len(labels)
    if sorted(labels) != list(range(height)):
        raise GeometryError(f"{path}: row numbers must be 0..{height - 1}, got {sorted(labels)}")
    n = len(cells) if n_modules is None else int(n_modules)
    missing = sorted(set(range(n)) - set(cells))
    extra = sorted(set(cells) - set(range(n)))
    if missing or extra:
        raise GeometryError(
            f"{path}: the map must hold modules 0..{n - 1} once each; "
            f"missing {missing[:5]}, unexpected {extra[:5]}"
        )
    rc = np.array([cells[m] for m in range(n)], dtype=np.int64)
    row, col = rc[:, 0], rc[:, 1]
    if module_positions is not None:
        row, col = _orient(path, row, col, np.asarray(module_positions, dtype=np.float64), (height, width))
    pixel = row * width + col
    _require_one_to_one(pixel, (height, width), str(path))
    return pixel, (height, width)


def _orient(
    path: Path, row: np.ndarray, col: np.ndarray, pos: np.ndarray, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Flip rows / columns so the top (+y) is row 0 and barrel columns grow with atan2(z, x)."""
    if pos.shape != (len(row), 3):
        raise GeometryError(f"{path}: module_positions must have shape ({len(row)}, 3), got {pos.shape}")
    height, width = shape
    if np.corrcoef(row, pos[:, 1])[0, 1] > 0:
        log.info("%s: image rows grow with height; flipping them so the top cap is row 0", path)
        row = height - 1 - row
    barrel = cylinder_location(pos) == BARREL
    phi = np.arctan2(pos[barrel, 2], pos[barrel, 0])
    r, c = row[barrel], col[barrel]
    order = np.lexsort((c, r))
    same_row = np.diff(r[order]) == 0
    step = np.angle(np.exp(1j * np.diff(phi[order])))[same_row] * np.sign(np.diff(c[order])[same_row])
    if len(step) and np.median(step) < 0:
        log.info("%s: barrel columns shrink with the azimuth; flipping the columns", path)
        col = width - 1 - col
    return row, col


def _cluster(values: np.ndarray, eps: float) -> np.ndarray:
    """Index (0, 1, ...) of each value's cluster, in increasing order; a new cluster starts at a gap
    wider than half the typical pitch (the median of the gaps wider than ``eps``)."""
    order = np.argsort(values, kind="stable")
    gaps = np.diff(values[order])
    wide = gaps[gaps > eps]
    tol = max(eps, 0.5 * float(np.median(wide))) if len(wide) else eps
    ids = np.empty(len(values), dtype=np.int64)
    ids[order] = np.concatenate([[0], np.cumsum(gaps > tol)])
    return ids


def _require_one_to_one(pixel: np.ndarray, shape: tuple[int, int], what: str) -> None:
    """Raise if two modules share a pixel or a pixel lies outside the image."""
    if pixel.min() < 0 or pixel.max() >= shape[0] * shape[1]:
        raise GeometryError(f"{what}: a module falls outside the {shape[0]}x{shape[1]} image")
    uniq, counts = np.unique(pixel, return_counts=True)
    if (counts > 1).any():
        p = int(uniq[counts > 1][0])
        modules = np.flatnonzero(pixel == p)[:4].tolist()
        raise GeometryError(
            f"{what}: modules {modules} share pixel (row {p // shape[1]}, column {p % shape[1]}); "
            "the layout cannot be mapped one-to-one onto an image"
        )
