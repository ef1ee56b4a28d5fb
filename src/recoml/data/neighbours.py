"""The one kNN / radius graph builder of recoml: KD-tree on the CPU, batched blocks on a GPU.

Every caller (the GNN graph builder, EdgeConv's dynamic graphs, metric-learning tracking, ONNX export
through the graph builder) goes through :func:`neighbour_table`, so there is one definition of "the ``k``
nearest neighbours within an event".

* **CPU** (and ``D <=`` :data:`KDTREE_MAX_DIM`): a `pykdtree <https://github.com/storpipfugl/pykdtree>`_
  KD-tree per event for kNN, scipy's ``cKDTree`` for radius searches (each the faster for its query,
  measured: see :func:`_query`), O(n log n); the search for ``k + 1`` neighbours finds the node itself
  first (or, among duplicate points, somewhere), which is dropped. Per-event trees were measured 10%
  faster than one tree with an extra "event" coordinate. Coordinates are float64.
* **CPU, fixed sensors** (:func:`sensor_neighbour_table`): when every node is one of a detector's fixed
  sensors (a ``GraphBuilder`` without time), each sensor's other sensors are sorted by distance once per
  process (:func:`sensor_table`); an event's neighbours of a hit are then its sensor's list read in order,
  keeping the first ``k`` sensors that were hit, in a compiled (numba) loop that stops as soon as it has
  them. Measured 3-6x faster than the KD-tree on toy WCTE and HK events (docs/benchmarks.md); a numpy
  version (gather, cumsum, first ``k``) cannot stop early and was 4-5x *slower* than the tree. Rows whose
  ``k`` hits lie beyond the table's width, and events with two hits on one sensor, go to the KD-tree.
* **GPU** (or more than :data:`KDTREE_MAX_DIM` dimensions): events of similar size are padded into
  ``(G, Nmax, D)`` blocks, squared distances summed coordinate by coordinate (exact to float32 rounding,
  unaffected by TF32/autocast) and ``topk`` taken with padding and self masked; memory bounded by
  ``chunk_size``, a Python loop only over groups.

Conventions (PyG's): ``edge_index[0]`` is the neighbour (source ``j``), ``edge_index[1]`` the centre
(target ``i``); edges come ordered by centre, then by distance. Among neighbours at exactly equal distance
the choice is arbitrary (both paths keep the same distances).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numba
import numpy as np
import torch
from pykdtree.kdtree import KDTree
from scipy.spatial import cKDTree

from recoml.errors import ConfigError, DataError

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "KDTREE_MAX_DIM",
    "SENSOR_TABLE_MAX_SENSORS",
    "SENSOR_TABLE_WIDTH",
    "SensorTable",
    "edges_from_table",
    "knn_graph",
    "neighbour_table",
    "radius_graph",
    "sensor_neighbour_table",
    "sensor_table",
]

#: Bound on the number of pairwise distances held at once by the block (GPU) path, per device type: on CPU
#: blocks that stay in cache are faster; on a GPU larger blocks mean fewer launches (2**24 float32 = 64 MiB).
DEFAULT_CHUNK_SIZE: dict[str, int] = {"cpu": 1 << 20, "cuda": 1 << 24}
#: Largest coordinate count searched with KD-trees on the CPU (above it, the block path). Measured on
#: events of 300 Gaussian points, k = 16: the trees are 1.5x faster at 8 dimensions and still 1.4x at 64
#: (EdgeConv's dynamic graphs in feature space), where a tree visits most of its leaves.
KDTREE_MAX_DIM: int = 64
#: Most neighbours listed per sensor by :func:`sensor_table` (all of them for smaller detectors). For HK
#: (19,994 PMTs; 41 MB as int16) 1,024 leaves ~2% of toy-event hits to the KD-tree; 512 leaves more and
#: its table builds in half the time (docs/benchmarks.md).
SENSOR_TABLE_WIDTH: int = 1024
#: Most sensors :func:`sensor_table` lists (int16 ids; HK has 19,994, 41 MB): a KM3NeT building block's
#: ~64k PMTs would need hundreds of MB in every process, so their graphs stay with the KD-tree.
SENSOR_TABLE_MAX_SENSORS: int = 1 << 15


def knn_graph(
    pos: torch.Tensor,
    batch: torch.Tensor | None = None,
    k: int = 16,
    loop: bool = False,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Edges from each node's ``k`` nearest neighbours in its own graph, ``(2, E)`` int64.

    Every node gets ``min(k, n - 1)`` incoming edges (``min(k, n)`` with ``loop=True``, itself included),
    ``n`` being the size of its graph. ``batch (N,)`` is PyG's graph-of-each-node vector (unsorted is
    accepted); ``chunk_size`` bounds the block path's memory (about 12 bytes x ``chunk_size``).
    """
    if k < 1:
        raise ConfigError(f"knn_graph: k must be >= 1, got {k}")
    return _graph(pos, batch, k, loop, None, chunk_size)


def radius_graph(
    pos: torch.Tensor,
    batch: torch.Tensor | None = None,
    r: float = 1.0,
    max_num_neighbors: int = 32,
    loop: bool = False,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Edges to every node within distance ``r`` (``<= r``) in the same graph, ``(2, E)`` int64.

    Same conventions as :func:`knn_graph`. Where more than ``max_num_neighbors`` nodes are within ``r``,
    the nearest ones are kept (deterministic up to exact ties, unlike torch-cluster's arbitrary choice).
    """
    if max_num_neighbors < 1:
        raise ConfigError(f"radius_graph: max_num_neighbors must be >= 1, got {max_num_neighbors}")
    if not r >= 0:
        raise ConfigError(f"radius_graph: r must be >= 0, got {r}")
    return _graph(pos, batch, max_num_neighbors, loop, float(r), chunk_size)


def _graph(
    pos: torch.Tensor, batch: torch.Tensor | None, k: int, loop: bool, r: float | None, chunk: int | None
) -> torch.Tensor:
    if pos.dim() != 2:
        raise DataError(f"graph construction needs pos of shape (N, D), got {tuple(pos.shape)}")
    if batch is not None and batch.shape != pos.shape[:1]:
        raise DataError(f"batch must have shape ({pos.shape[0]},), got {tuple(batch.shape)}")
    if batch is not None and batch.numel() > 1 and bool((batch[1:] < batch[:-1]).any()):
        perm = torch.argsort(batch, stable=True)
        return perm[_graph(pos[perm], batch[perm], k, loop, r, chunk)]
    nbr, _ = neighbour_table(pos, _counts(pos, batch), k, loop, r, chunk)
    return edges_from_table(nbr)


def _counts(pos: torch.Tensor, batch: torch.Tensor | None) -> torch.Tensor:
    """Nodes per graph on the host, from a sorted batch vector (one device sync)."""
    if batch is None:
        return torch.tensor([pos.shape[0]], dtype=torch.int64)
    if batch.numel() == 0:
        return torch.zeros(0, dtype=torch.int64)
    return torch.bincount(batch.long()).cpu()


def edges_from_table(nbr: torch.Tensor, buffer: torch.Tensor | None = None) -> torch.Tensor:
    """``(2, E)`` [neighbour, centre] edges of a neighbour table (``-1`` marks no neighbour).

    ``buffer``: a flat int64 tensor of at least ``2 * N * k`` elements on ``nbr``'s device; the edges are
    written into its start (a contiguous view of it is returned) instead of a new tensor (a WCTE batch's
    edges are 39 MB: fresh pages cost 6x the copy).
    """
    n, k = nbr.shape
    source = nbr.reshape(-1)
    if n * k and not bool((source < 0).any()):  # every node has k neighbours: no masking pass
        edges = _edge_output(buffer, n * k, nbr.device)
        if edges is None:
            centre = torch.arange(n, device=nbr.device).repeat_interleave(k, output_size=n * k)
            return torch.stack([source, centre])
        edges[0].copy_(source)
        edges[1].view(n, k).copy_(torch.arange(n, device=nbr.device).unsqueeze(1).expand(n, k))
        return edges
    if nbr.device.type == "cpu":
        # A few small events leave -1s in a WCTE batch: numpy's flatnonzero/take/floor_divide were measured
        # 5x faster than torch's masking (87 -> 16 ms for 3.5M entries).
        flat = nbr.numpy().reshape(-1)
        kept = np.flatnonzero(flat >= 0)
        edges = _edge_output(buffer, len(kept), nbr.device)
        edges = torch.empty((2, len(kept)), dtype=torch.int64) if edges is None else edges
        out = edges.numpy()
        np.take(flat, kept, out=out[0])
        np.floor_divide(kept, k, out=out[1])
        return edges
    centre = torch.arange(n, device=nbr.device).repeat_interleave(k, output_size=n * k)
    valid = source >= 0
    return torch.stack([source[valid], centre[valid]])


def _edge_output(buffer: torch.Tensor | None, n_edges: int, device: torch.device) -> torch.Tensor | None:
    """``(2, n_edges)`` view of the start of ``buffer``, or None when there is none or it does not fit."""
    if buffer is None or buffer.numel() < 2 * n_edges or buffer.device != device:
        return None
    return buffer[: 2 * n_edges].view(2, n_edges)


def neighbour_table(
    pos: torch.Tensor,
    counts: torch.Tensor,
    k: int,
    loop: bool = False,
    r: float | None = None,
    chunk_size: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, kt)`` global neighbour ids (-1 where none) and squared distances (inf), nearest first.

    ``counts`` (``(B,)``): nodes of each graph, the graphs stored one after the other in ``pos``;
    ``kt = min(k, largest graph)``. With ``r``, neighbours further than ``r`` are dropped. Results are on
    ``pos``'s device; the KD-tree path runs on the CPU when ``pos`` is on the CPU and ``D`` is small.
    """
    counts = counts.to(torch.int64).cpu()
    n_nodes = pos.shape[0]
    if int(counts.sum()) != n_nodes:
        raise DataError(f"graph sizes add up to {int(counts.sum())} nodes, pos has {n_nodes}")
    width, any_edges = _table_width(counts, k, loop)
    if not any_edges:
        return _empty_table(n_nodes, width, pos.device)
    if pos.device.type == "cpu" and pos.shape[1] <= KDTREE_MAX_DIM:
        return _kdtree_table(pos, counts, width, loop, r)
    nbr, dist2 = _block_table(pos, counts, width, loop, chunk_size)
    if r is not None:
        far = dist2 > r * r
        nbr, dist2 = nbr.masked_fill(far, -1), dist2.masked_fill(far, math.inf)
    return nbr, dist2


def _table_width(counts: torch.Tensor, k: int, loop: bool) -> tuple[int, bool]:
    """The table's width ``min(k, largest graph)``, and whether any node can have a neighbour at all."""
    n_max = int(counts.max()) if len(counts) else 0
    width = max(0, min(int(k), n_max))
    return width, width > 0 and n_max >= (1 if loop else 2)


def _empty_table(n_nodes: int, width: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    return (
        torch.full((n_nodes, width), -1, dtype=torch.int64, device=device),
        torch.full((n_nodes, width), math.inf, dtype=torch.float32, device=device),
    )


# -- CPU: one KD-tree per batch --------------------------------------------------------------------------


def _kdtree_table(
    pos: torch.Tensor, counts: torch.Tensor, k: int, loop: bool, r: float | None
) -> tuple[torch.Tensor, torch.Tensor]:
    points = pos.detach().to(torch.float64).numpy()
    n = points.shape[0]
    if not np.isfinite(points).all():
        raise DataError("graph construction: node positions hold NaN or infinite values")
    skip = 0 if loop else 1
    nbr = np.empty((n, k), dtype=np.int64)
    dist2 = np.empty((n, k), dtype=np.float32)
    # A strict bound would miss points at exactly r: nudge it up, then apply "<= r" in the general path.
    bound = None if r is None else float(np.nextafter(r, np.inf))
    start = 0
    for size in counts.tolist():
        stop = start + size
        k_event = min(k + skip, size)
        if k_event > 0:
            block = points[start:stop]
            d2, found = _query(block, k_event, bound)
            found = found.reshape(size, k_event)
            d2 = d2.reshape(size, k_event)
            if not _write_plain(found, d2, start, k, skip, r, nbr[start:stop], dist2[start:stop]):
                _write_general(found, d2, start, k, loop, r, nbr[start:stop], dist2[start:stop])
        start = stop
    return torch.from_numpy(nbr), torch.from_numpy(dist2)


def _write_plain(
    found: np.ndarray,
    d2: np.ndarray,
    start: int,
    k: int,
    skip: int,
    r: float | None,
    nbr: np.ndarray,
    dist2: np.ndarray,
) -> bool:
    """Copy one event's query into its rows when nothing needs masking (the usual case, measured as 20% of
    the KD-tree path's time when done with the general masks): every node has ``k`` neighbours, found
    itself first, and no radius applies. Returns False (nothing written) otherwise."""
    size = found.shape[0]
    if r is not None or found.shape[1] != k + skip:
        return False
    if skip and not (found[:, 0] == np.arange(size)).all():
        return False
    np.add(found[:, skip:], start, out=nbr, casting="unsafe")
    dist2[:] = d2[:, skip:]
    return True


def _write_general(
    found: np.ndarray,
    d2: np.ndarray,
    start: int,
    k: int,
    loop: bool,
    r: float | None,
    nbr: np.ndarray,
    dist2: np.ndarray,
    centres: np.ndarray | None = None,
) -> None:
    """Rows of one event from its query, masking missing neighbours (the radius search marks them with an
    infinite distance), those beyond ``r`` (``<= r`` kept) and the node itself among duplicates (it may
    come later than first, or not at all past ``k`` copies), each row compacted to its first ``k``.
    ``centres``: the event-local id of each row's node (default: rows are the event's nodes in order)."""
    keep = np.isfinite(d2)
    if r is not None:
        keep &= d2 <= r * r
    if not loop:
        centres = np.arange(found.shape[0]) if centres is None else centres
        keep &= found != centres[:, None]
    slot = np.cumsum(keep, axis=1) - 1
    keep &= slot < k
    rows = np.nonzero(keep)
    nbr[:] = -1
    dist2[:] = np.inf
    nbr[rows[0], slot[rows]] = found[rows].astype(np.int64) + start
    dist2[rows[0], slot[rows]] = d2[rows]


def _query(
    points: np.ndarray, k: int, bound: float | None, queries: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Squared distances (inf where none) and ids of the ``k`` nearest ``points`` of each of ``queries``
    (default: the points themselves).

    Measured on one core (docs/benchmarks.md): pykdtree is faster for plain kNN in 3 to 12 dimensions,
    scipy's cKDTree for searches bounded by a radius (1.2-1.8x).
    """
    queries = points if queries is None else queries
    if bound is None:
        return KDTree(points).query(queries, k=k, sqr_dists=True)
    dist, found = cKDTree(points).query(queries, k=k, distance_upper_bound=bound)
    return np.square(dist), np.asarray(found)


# -- CPU, fixed sensors: each sensor's neighbours listed once ---------------------------------------------


@dataclass(frozen=True, eq=False)
class SensorTable:
    """Each of a detector's fixed sensors' other sensors, nearest first (equal distances by sensor id).

    ``positions (S, D)`` float64 (the float32 positions the nodes get, widened as the KD-tree path does,
    so both paths compute the same distances); ``order (S, W)`` int16 sensor ids, ``W = min(width, S - 1)``:
    a row lists the ``W`` nearest other sensors.
    """

    positions: np.ndarray
    order: np.ndarray

    @property
    def complete(self) -> bool:
        """Whether every row lists all other sensors (then no search can run past a row's end)."""
        return self.order.shape[1] == self.positions.shape[0] - 1


#: Tables built in this process, by content of the positions and width (a few detectors at most).
_SENSOR_TABLES: dict[tuple[str, int], SensorTable] = {}


def sensor_table(positions: torch.Tensor, width: int = SENSOR_TABLE_WIDTH) -> SensorTable:
    """The :class:`SensorTable` of sensors at ``positions (S, D)``, built on first use in this process.

    Built in chunks of rows (memory bounded by the chunk): the ``W + 1`` nearest sensors of each from a
    KD-tree, then sorted by (exact squared distance, id). HK (S = 19,994, W = 1,024): ~5 CPU-s, 41 MB.
    """
    points = positions.detach().cpu().to(torch.float32).to(torch.float64).numpy()
    if points.ndim != 2 or not np.isfinite(points).all():
        raise DataError(f"sensor table: positions must be finite, of shape (S, D), got {points.shape}")
    n_sensors = points.shape[0]
    if n_sensors > SENSOR_TABLE_MAX_SENSORS:
        raise ConfigError(
            f"sensor table: at most {SENSOR_TABLE_MAX_SENSORS:,} sensors, got {n_sensors:,} "
            "(search such arrays with neighbour_table)"
        )
    width = max(0, min(int(width), n_sensors - 1))
    key = (hashlib.sha1(np.ascontiguousarray(points).tobytes()).hexdigest(), width)
    table = _SENSOR_TABLES.get(key)
    if table is None:
        if len(_SENSOR_TABLES) >= 4:
            _SENSOR_TABLES.pop(next(iter(_SENSOR_TABLES)))
        table = _SENSOR_TABLES[key] = SensorTable(points, _sensor_order(points, width))
    return table


def _sensor_order(points: np.ndarray, width: int, chunk: int = 2048) -> np.ndarray:
    n_sensors = points.shape[0]
    order = np.empty((n_sensors, width), dtype=np.int16)
    if width == 0:
        return order
    tree = cKDTree(points)
    for start in range(0, n_sensors, chunk):
        rows = np.arange(start, min(n_sensors, start + chunk))
        order[rows] = _nearest_sensors(tree, points, rows, width)
    return order


def _nearest_sensors(tree: cKDTree, points: np.ndarray, rows: np.ndarray, width: int) -> np.ndarray:
    """The ``width`` nearest other sensors of each of ``rows``, by (exact squared distance, id): the
    tree's nearest with a margin, re-sorted; rows whose margin is all at their last kept distance (equal
    distances are common on a regular grid) are asked again for twice as many."""
    n_sensors = points.shape[0]
    n_query = min(n_sensors, width + 17)
    result = np.empty((len(rows), width), dtype=np.int64)
    todo = np.arange(len(rows))
    while len(todo):
        centres = rows[todo]
        _, found = tree.query(points[centres], k=n_query)
        # Ids ascending first, so that a stable sort by distance orders equal distances by id; squared
        # distances summed axis by axis as the walk sums them.
        found = np.sort(found.reshape(len(todo), n_query), axis=1)
        diff = points[found] - points[centres, None, :]
        d2 = diff[..., 0] * diff[..., 0]
        for axis in range(1, points.shape[1]):
            d2 += diff[..., axis] * diff[..., axis]
        d2[found == centres[:, None]] = -1.0  # the sensor itself first, then dropped
        by_distance = np.argsort(d2, axis=1, kind="stable")
        sorted_d2 = np.take_along_axis(d2, by_distance, axis=1)
        settled = (sorted_d2[:, width] < sorted_d2[:, -1] * (1 - 1e-9)) | (n_query == n_sensors)
        kept = by_distance[settled, 1 : width + 1]
        result[todo[settled]] = np.take_along_axis(found[settled], kept, axis=1)
        todo = todo[~settled]
        n_query = min(n_sensors, 2 * n_query)
    return result


def sensor_neighbour_table(
    table: SensorTable, sensors: torch.Tensor, counts: torch.Tensor, k: int, loop: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`neighbour_table` of ``table.positions[sensors]`` (the same result up to equal distances),
    found by reading each hit's sensor's list of nearest sensors: ``sensors (N,)`` the sensor of each
    node, graphs stored one after the other with ``counts`` nodes. Rows not complete within the table's
    width and events with two nodes on one sensor are searched by the KD-tree path."""
    counts = counts.to(torch.int64).cpu()
    n_nodes = sensors.shape[0]
    if int(counts.sum()) != n_nodes:
        raise DataError(f"graph sizes add up to {int(counts.sum())} nodes, sensors has {n_nodes}")
    n_sensors = table.positions.shape[0]
    ids = sensors.detach().cpu().to(torch.int64).numpy()
    if n_nodes and (int(ids.min()) < 0 or int(ids.max()) >= n_sensors):
        raise DataError(f"sensor ids must be in [0, {n_sensors}), got {int(ids.min())}..{int(ids.max())}")
    width, any_edges = _table_width(counts, k, loop)
    if not any_edges:
        return _empty_table(n_nodes, width, sensors.device)
    nbr = np.empty((n_nodes, width), dtype=np.int64)  # every row written by the walk or the fallback
    dist2 = np.empty((n_nodes, width), dtype=np.float32)
    sizes = counts.numpy()
    shared = np.zeros(len(sizes), dtype=np.bool_)  # events with two nodes on one sensor
    short = np.zeros(n_nodes, dtype=np.bool_)  # rows that ran past the table's width
    scratch = np.full(n_sensors, -1, dtype=np.int32)
    _walk_sensor_lists(
        table.order, table.positions, ids, sizes, width, loop, scratch, nbr, dist2, shared, short
    )
    if shared.any() or short.any():
        _kdtree_fallback(table.positions, ids, sizes, width, loop, shared, short, nbr, dist2)
    return torch.from_numpy(nbr).to(sensors.device), torch.from_numpy(dist2).to(sensors.device)


def _kdtree_fallback(
    positions: np.ndarray,
    sensors: np.ndarray,
    sizes: np.ndarray,
    k: int,
    loop: bool,
    shared: np.ndarray,
    short: np.ndarray,
    nbr: np.ndarray,
    dist2: np.ndarray,
) -> None:
    """The KD-tree's rows for every node of the ``shared`` events and the ``short`` rows of the others
    (a tree of the event's nodes, queried at those rows)."""
    starts = np.cumsum(sizes) - sizes
    redo = short.copy()
    for event in np.flatnonzero(shared):
        redo[starts[event] : starts[event] + sizes[event]] = True
    events = np.unique(np.searchsorted(starts, np.flatnonzero(redo), side="right") - 1)
    for event in events:
        start, size = int(starts[event]), int(sizes[event])
        points = positions[sensors[start : start + size]]
        rows = np.flatnonzero(redo[start : start + size])
        k_event = min(k + (0 if loop else 1), size)
        d2, found = _query(points, k_event, None, points[rows])
        part_nbr = np.empty((len(rows), k), dtype=np.int64)
        part_dist2 = np.empty((len(rows), k), dtype=np.float32)
        found, d2 = found.reshape(len(rows), k_event), d2.reshape(len(rows), k_event)
        _write_general(found, d2, start, k, loop, None, part_nbr, part_dist2, centres=rows)
        nbr[start + rows] = part_nbr
        dist2[start + rows] = part_dist2


@numba.njit(cache=True, nogil=True)
def _walk_sensor_lists(
    order: np.ndarray,
    positions: np.ndarray,
    sensors: np.ndarray,
    sizes: np.ndarray,
    k: int,
    loop: bool,
    hit_of: np.ndarray,
    nbr: np.ndarray,
    dist2: np.ndarray,
    shared: np.ndarray,
    short: np.ndarray,
) -> None:
    """Per event: mark each hit sensor with its node (``hit_of``, all -1 between events), then for each
    node read its sensor's list until ``k`` (or all the event's) other nodes are found. Sets ``shared``
    for events with two nodes on one sensor (left to the KD-tree), ``short`` for rows that ran out."""
    width = order.shape[1]
    dim = positions.shape[1]
    start = 0
    for event in range(sizes.shape[0]):
        size = sizes[event]
        stop = start + size
        for node in range(start, stop):
            if hit_of[sensors[node]] >= 0:
                shared[event] = True
            hit_of[sensors[node]] = node
        want = min(k, size if loop else size - 1)
        if not shared[event]:
            for node in range(start, stop):
                sensor = sensors[node]
                n_found = 0
                if loop and want > 0:
                    nbr[node, 0] = node
                    dist2[node, 0] = 0.0
                    n_found = 1
                column = 0
                while n_found < want and column < width:
                    other = order[sensor, column]
                    column += 1
                    hit = hit_of[other]
                    if hit >= 0:
                        d = 0.0
                        for axis in range(dim):
                            delta = positions[other, axis] - positions[sensor, axis]
                            d += delta * delta
                        nbr[node, n_found] = hit
                        dist2[node, n_found] = d
                        n_found += 1
                short[node] = n_found < want
                for column in range(n_found, k):
                    nbr[node, column] = -1
                    dist2[node, column] = np.inf
        for node in range(start, stop):
            hit_of[sensors[node]] = -1
        start = stop


# -- GPU: padded blocks ----------------------------------------------------------------------------------


def _block_table(
    pos: torch.Tensor, counts: torch.Tensor, k: int, loop: bool, chunk_size: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Graphs sorted by size and grouped so that ``G * Nmax**2 <= chunk_size``; a graph too large for that
    alone is processed in blocks of rows."""
    device = pos.device
    if chunk_size is None:
        chunk_size = DEFAULT_CHUNK_SIZE.get(device.type, DEFAULT_CHUNK_SIZE["cuda"])
    n_nodes = pos.shape[0]
    nbr = torch.full((n_nodes, k), -1, dtype=torch.int64, device=device)
    dist2 = torch.full((n_nodes, k), math.inf, dtype=torch.float32, device=device)
    pos = pos.detach().to(torch.float32)
    starts = torch.cumsum(counts, 0) - counts
    order = torch.argsort(counts, descending=True, stable=True)
    sorted_counts = counts[order].tolist()
    counts_dev, starts_dev, order_dev = counts.to(device), starts.to(device), order.to(device)
    smallest_with_edges = 1 if loop else 2
    i = 0
    while i < len(sorted_counts) and sorted_counts[i] >= smallest_with_edges:
        n0 = sorted_counts[i]
        group = max(1, chunk_size // (n0 * n0))
        events = order_dev[i : i + group]
        i += group
        _block_group(pos, counts_dev[events], starts_dev[events], n0, k, loop, chunk_size, nbr, dist2)
    return nbr, dist2


def _block_group(
    pos: torch.Tensor,
    counts: torch.Tensor,
    starts: torch.Tensor,
    n0: int,
    k: int,
    loop: bool,
    chunk_size: int,
    nbr: torch.Tensor,
    dist2: torch.Tensor,
) -> None:
    """Fill ``nbr``/``dist2`` rows of a group of graphs padded to ``n0`` nodes."""
    device = pos.device
    n_graphs = counts.shape[0]
    local = torch.arange(n0, device=device)
    valid = local < counts.unsqueeze(1)  # (G, n0)
    node = torch.where(valid, starts.unsqueeze(1) + local, 0)  # global node id, 0 for padding
    # Padding nodes sit at infinity: their squared distance to any real node is inf with no masking
    # pass (padding rows get NaN, and are dropped).
    padded = torch.where(valid.unsqueeze(2), pos[node], math.inf)  # (G, n0, D)
    columns = [padded[..., d].unsqueeze(1) for d in range(padded.shape[-1])]  # (G, 1, n0) each
    kk = min(k, n0)
    rows = min(n0, max(1, chunk_size // (n_graphs * n0)))
    for r0 in range(0, n0, rows):
        r1 = min(n0, r0 + rows)
        d2 = None
        for d, col in enumerate(columns):
            diff = padded[:, r0:r1, d].unsqueeze(2) - col  # (G, r, n0)
            d2 = diff.mul_(diff) if d2 is None else d2.addcmul_(diff, diff)
        assert d2 is not None
        if not loop:
            d2.diagonal(offset=r0, dim1=1, dim2=2).fill_(math.inf)
        # Non-negative float32 order as their int32 bit patterns: integer topk is faster on CPU.
        bits, idx = d2.view(torch.int32).topk(kk, dim=2, largest=False)
        values = bits.view(torch.float32)
        neighbour = torch.where(torch.isfinite(values), starts.view(-1, 1, 1) + idx, -1)
        row_valid = valid[:, r0:r1]
        target = node[:, r0:r1][row_valid]
        nbr[target, :kk] = neighbour[row_valid]
        dist2[target, :kk] = values[row_valid]
