"""The one kNN / radius graph builder of recoml: KD-tree on the CPU, batched blocks on a GPU.

Every caller (the GNN graph builder, EdgeConv's dynamic graphs, metric-learning tracking, ONNX export
through the graph builder) goes through :func:`neighbour_table`, so there is one definition of "the ``k``
nearest neighbours within an event".

* **CPU** (and ``D <=`` :data:`KDTREE_MAX_DIM`): a `pykdtree <https://github.com/storpipfugl/pykdtree>`_
  KD-tree per event for kNN, scipy's ``cKDTree`` for radius searches (each the faster for its query,
  measured: see :func:`_query`), O(n log n); the search for ``k + 1`` neighbours finds the node itself
  first (or, among duplicate points, somewhere), which is dropped. Per-event trees were measured 10%
  faster than one tree with an extra "event" coordinate. Coordinates are float64.
* **GPU** (or more than :data:`KDTREE_MAX_DIM` dimensions): events of similar size are padded into
  ``(G, Nmax, D)`` blocks, squared distances summed coordinate by coordinate (exact to float32 rounding,
  unaffected by TF32/autocast) and ``topk`` taken with padding and self masked; memory bounded by
  ``chunk_size``, a Python loop only over groups.

Conventions (PyG's): ``edge_index[0]`` is the neighbour (source ``j``), ``edge_index[1]`` the centre
(target ``i``); edges come ordered by centre, then by distance. Among neighbours at exactly equal distance
the choice is arbitrary (both paths keep the same distances).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from pykdtree.kdtree import KDTree
from scipy.spatial import cKDTree

from recoml.errors import ConfigError, DataError

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "KDTREE_MAX_DIM",
    "edges_from_table",
    "knn_graph",
    "neighbour_table",
    "radius_graph",
]

#: Bound on the number of pairwise distances held at once by the block (GPU) path, per device type: on CPU
#: blocks that stay in cache are faster; on a GPU larger blocks mean fewer launches (2**24 float32 = 64 MiB).
DEFAULT_CHUNK_SIZE: dict[str, int] = {"cpu": 1 << 20, "cuda": 1 << 24}
#: Largest coordinate count searched with KD-trees on the CPU (above it, the block path). Measured on
#: events of 300 Gaussian points, k = 16: the trees are 1.5x faster at 8 dimensions and still 1.4x at 64
#: (EdgeConv's dynamic graphs in feature space), where a tree visits most of its leaves.
KDTREE_MAX_DIM: int = 64


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

    ``buffer``: a flat int64 tensor of at least ``2 * N * k`` elements on ``nbr``'s device; when every node
    has ``k`` neighbours the edges are written into its start (a contiguous view of it is returned) instead
    of a new tensor (a WCTE batch's edges are 39 MB: fresh pages cost 6x the copy).
    """
    n, k = nbr.shape
    source = nbr.reshape(-1)
    if n * k and not bool((source < 0).any()):  # every node has k neighbours: no masking pass
        fits = buffer is not None and buffer.numel() >= 2 * n * k and buffer.device == nbr.device
        if not fits:
            centre = torch.arange(n, device=nbr.device).repeat_interleave(k, output_size=n * k)
            return torch.stack([source, centre])
        assert buffer is not None
        edges = buffer[: 2 * n * k].view(2, n * k)
        edges[0].copy_(source)
        edges[1].view(n, k).copy_(torch.arange(n, device=nbr.device).unsqueeze(1).expand(n, k))
        return edges
    centre = torch.arange(n, device=nbr.device).repeat_interleave(k, output_size=n * k)
    valid = source >= 0
    return torch.stack([source[valid], centre[valid]])


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
    n_max = int(counts.max()) if len(counts) else 0
    width = max(0, min(int(k), n_max))
    if width == 0 or n_max < (1 if loop else 2):
        return (
            torch.full((n_nodes, width), -1, dtype=torch.int64, device=pos.device),
            torch.full((n_nodes, width), math.inf, dtype=torch.float32, device=pos.device),
        )
    if pos.device.type == "cpu" and pos.shape[1] <= KDTREE_MAX_DIM:
        return _kdtree_table(pos, counts, width, loop, r)
    nbr, dist2 = _block_table(pos, counts, width, loop, chunk_size)
    if r is not None:
        far = dist2 > r * r
        nbr, dist2 = nbr.masked_fill(far, -1), dist2.masked_fill(far, math.inf)
    return nbr, dist2


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
) -> None:
    """One event's rows from its query, masking missing neighbours (small events; the KD-tree marks them
    with index ``size``), those beyond ``r`` (``<= r`` kept) and the node itself among duplicates (it may
    come later than first, or not at all past ``k`` copies), each row compacted to its first ``k``."""
    size = found.shape[0]
    keep = found < size
    if r is not None:
        keep &= d2 <= r * r
    if not loop:
        keep &= found != np.arange(size)[:, None]
    slot = np.cumsum(keep, axis=1) - 1
    keep &= slot < k
    rows = np.nonzero(keep)
    nbr[:] = -1
    dist2[:] = np.inf
    nbr[rows[0], slot[rows]] = found[rows].astype(np.int64) + start
    dist2[rows[0], slot[rows]] = d2[rows]


def _query(points: np.ndarray, k: int, bound: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Squared distances and ids (``len(points)`` where none) of each point's ``k`` nearest points.

    Measured on one core (docs/benchmarks.md): pykdtree is faster for plain kNN in 3 to 12 dimensions,
    scipy's cKDTree for searches bounded by a radius (1.2-1.8x).
    """
    if bound is None:
        return KDTree(points).query(points, k=k, sqr_dists=True)
    dist, found = cKDTree(points).query(points, k=k, distance_upper_bound=bound)
    return np.square(dist), np.asarray(found)


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
