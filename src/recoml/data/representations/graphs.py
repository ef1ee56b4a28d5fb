"""kNN / radius graphs of every event of a batch in plain PyTorch, and the hit-graph builder.

PyG's compiled extras (torch-cluster, pyg-lib) are not available, so neighbours are found by padding
groups of events of similar size into ``(G, Nmax, D)`` blocks, computing squared distances and taking
``topk`` with padding and self masked: no Python loop over events (only over groups), no edge between
events, and memory bounded by ``chunk_size``. Squared distances are summed coordinate by coordinate
(not ``|x|^2 + |y|^2 - 2xy`` through a matmul), so they are exact to float32 rounding and unaffected by
TF32 matmuls or autocast on the GPU.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from recoml.contracts.batch import HitBatch
from recoml.contracts.detector import Detector
from recoml.contracts.representation import Representation
from recoml.data.normalization import DEFAULT_FEATURES, FeatureNormalizer, HitFeatures, event_of_hits
from recoml.errors import ConfigError, DataError
from recoml.utils.timing import events_per_second

log = logging.getLogger(__name__)

#: Speed of light in water (n = 1.333), cm/ns: turns hit times into lengths for space-time kNN.
C_WATER_CM_PER_NS: float = 29.9792458 / 1.333
#: Default bound on the number of pairwise distances held at once, per device type: on CPU blocks that
#: stay in cache are faster (measured on WCTE events: 2**20 is ~1.8x faster than 2**24); on a GPU larger
#: blocks mean fewer kernel launches (2**24 float32 = 64 MiB).
DEFAULT_CHUNK_SIZE: dict[str, int] = {"cpu": 1 << 20, "cuda": 1 << 24}


def knn_graph(
    pos: torch.Tensor,
    batch: torch.Tensor | None = None,
    k: int = 16,
    loop: bool = False,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Edges from each node's ``k`` nearest neighbours in its own graph, ``(2, E)`` int64.

    PyG convention: ``edge_index[0]`` is the neighbour (source ``j``), ``edge_index[1]`` the centre
    (target ``i``); every node gets ``min(k, n - 1)`` incoming edges (``min(k, n)`` with ``loop=True``,
    itself included), ``n`` being the size of its graph. Edges come ordered by centre, then by distance.
    ``batch (N,)`` must be sorted (PyG's batch vector); ``chunk_size`` bounds the number of pairwise
    distances computed at once (peak memory is about 3 x 4 bytes x ``chunk_size``; default
    :data:`DEFAULT_CHUNK_SIZE` for the device).
    """
    if k < 1:
        raise ConfigError(f"knn_graph: k must be >= 1, got {k}")
    nbr, _ = _neighbour_table(pos, _counts(pos, batch), k, loop, chunk_size)
    return _edges(nbr, nbr >= 0)


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
    the nearest ones are kept (deterministic, unlike torch-cluster's arbitrary choice).
    """
    if max_num_neighbors < 1:
        raise ConfigError(f"radius_graph: max_num_neighbors must be >= 1, got {max_num_neighbors}")
    nbr, dist2 = _neighbour_table(pos, _counts(pos, batch), max_num_neighbors, loop, chunk_size)
    return _edges(nbr, (nbr >= 0) & (dist2 <= float(r) ** 2))


def _counts(pos: torch.Tensor, batch: torch.Tensor | None) -> torch.Tensor:
    """Nodes per graph on the host, from a sorted batch vector (one device sync)."""
    if pos.dim() != 2:
        raise DataError(f"graph construction needs pos of shape (N, D), got {tuple(pos.shape)}")
    if batch is None:
        return torch.tensor([pos.shape[0]], dtype=torch.int64)
    if batch.shape != pos.shape[:1]:
        raise DataError(f"batch must have shape ({pos.shape[0]},), got {tuple(batch.shape)}")
    if batch.numel() == 0:
        return torch.zeros(0, dtype=torch.int64)
    if bool((batch[1:] < batch[:-1]).any()):
        raise DataError("graph construction needs a sorted batch vector (nodes grouped by graph)")
    return torch.bincount(batch).cpu()


def _edges(nbr: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    centre = torch.arange(nbr.shape[0], device=nbr.device).unsqueeze(1).expand_as(nbr)
    return torch.stack([nbr[valid], centre[valid]])


def _neighbour_table(
    pos: torch.Tensor, counts: torch.Tensor, k: int, loop: bool, chunk_size: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, kt)`` global neighbour ids (-1 where none) and squared distances (inf), nearest first.

    ``counts`` (host, ``(B,)``): nodes of each graph, graphs stored one after the other in ``pos``.
    Graphs are sorted by size and grouped so that ``G * Nmax**2 <= chunk_size``; a graph too large for
    that alone is processed in blocks of rows.
    """
    device = pos.device
    if chunk_size is None:
        chunk_size = DEFAULT_CHUNK_SIZE.get(device.type, DEFAULT_CHUNK_SIZE["cuda"])
    n_nodes = pos.shape[0]
    counts = counts.to(torch.int64).cpu()
    n_max = int(counts.max()) if len(counts) else 0
    width = max(0, min(k, n_max))
    nbr = torch.full((n_nodes, width), -1, dtype=torch.int64, device=device)
    dist2 = torch.full((n_nodes, width), float("inf"), dtype=torch.float32, device=device)
    if width == 0 or n_nodes == 0:
        return nbr, dist2
    if int(counts.sum()) != n_nodes:
        raise DataError(f"graph sizes add up to {int(counts.sum())} nodes, pos has {n_nodes}")
    pos = pos.to(torch.float32)
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
        _knn_group(pos, counts_dev[events], starts_dev[events], n0, k, loop, chunk_size, nbr, dist2)
    return nbr, dist2


def _knn_group(
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
    padded = torch.where(valid.unsqueeze(2), pos[node], float("inf"))  # (G, n0, D)
    columns = [padded[..., d].unsqueeze(1) for d in range(padded.shape[-1])]  # (G, 1, n0) each
    kk = min(k, n0)
    rows = min(n0, max(1, chunk_size // (n_graphs * n0)))
    inf = float("inf")
    for r0 in range(0, n0, rows):
        r1 = min(n0, r0 + rows)
        d2 = None
        for d, col in enumerate(columns):
            diff = padded[:, r0:r1, d].unsqueeze(2) - col  # (G, r, n0)
            d2 = diff.mul_(diff) if d2 is None else d2.addcmul_(diff, diff)
        assert d2 is not None  # positions have at least one coordinate
        if not loop:
            d2.diagonal(offset=r0, dim1=1, dim2=2).fill_(inf)
        # Non-negative float32 order as their int32 bit patterns: integer topk is faster on CPU.
        bits, idx = d2.view(torch.int32).topk(kk, dim=2, largest=False)
        values = bits.view(torch.float32)
        neighbour = torch.where(torch.isfinite(values), starts.view(-1, 1, 1) + idx, -1)
        row_valid = valid[:, r0:r1]
        target = node[:, r0:r1][row_valid]
        nbr[target, :kk] = neighbour[row_valid]
        dist2[target, :kk] = values[row_valid]


@dataclass
class GraphInput:
    """A batch of hit graphs in PyG's flat layout (nodes are the batch's hits, in order)."""

    x: torch.Tensor  # (N, F) float32 node features
    pos: torch.Tensor  # (N, 3) cm, or (N, 4) with time * time_scale (cm) for space-time graphs
    edge_index: torch.Tensor  # (2, E) int64, [source (neighbour), target (centre)]
    batch: torch.Tensor  # (N,) int64 event of each node
    num_graphs: int

    @property
    def num_nodes(self) -> int:
        return self.x.shape[0]

    def to(self, *args, **kwargs) -> GraphInput:
        return GraphInput(
            x=self.x.to(*args, **kwargs),
            pos=self.pos.to(*args, **kwargs),
            edge_index=self.edge_index.to(*args, **kwargs),
            batch=self.batch.to(*args, **kwargs),
            num_graphs=self.num_graphs,
        )


class GraphBuilder(Representation):
    """``forward(batch) -> GraphInput``: one node per hit, kNN edges within each event.

    Node positions/directions come from the detector's PMT table indexed by ``hits["pmt"]``; ``x`` holds
    ``features`` (normalized when a normalizer is given). Neighbours are found in raw space (cm), or in
    space-time with ``space_time=True``, the time axis scaled by ``time_scale`` (cm/ns; default the speed
    of light in water, so a hit 1 ns later counts as 22.5 cm further).
    """

    #: Buffers (registered in __init__).
    pmt_positions: torch.Tensor

    #: What models consume it declare as their ``representation``.
    builds = "graph"

    def __init__(
        self,
        detector: Detector,
        k: int = 16,
        space_time: bool = False,
        time_scale: float = C_WATER_CM_PER_NS,
        features: Sequence[str] = DEFAULT_FEATURES,
        normalizer: FeatureNormalizer | None = None,
        loop: bool = False,
        chunk_size: int | None = None,
        time_reference: str = "none",
    ) -> None:
        super().__init__()
        if k < 1:
            raise ConfigError(f"GraphBuilder: k must be >= 1, got {k}")
        self.k = int(k)
        self.space_time = bool(space_time)
        self.time_scale = float(time_scale)
        self.loop = bool(loop)
        self.chunk_size = None if chunk_size is None else int(chunk_size)
        self.features = HitFeatures(detector, features, normalizer, time_reference)
        self.time_reference = time_reference
        self.register_buffer(
            "pmt_positions", torch.as_tensor(detector.sensor_positions, dtype=torch.float32), persistent=False
        )

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.features.feature_names

    @property
    def normalized_features(self) -> tuple[str, ...]:
        return tuple(self.feature_names)

    def input_dims(self) -> dict[str, int]:
        return {"in_channels": self.out_channels}

    @property
    def out_channels(self) -> int:
        """Node feature width ``F``."""
        return len(self.feature_names)

    def forward(self, batch: HitBatch) -> GraphInput:
        pmt = batch.hits["pmt"].long()
        pos = self.pmt_positions.index_select(0, pmt)
        if self.space_time:
            t = batch.hits["time"].to(torch.float32) * self.time_scale
            pos = torch.cat([pos, t.unsqueeze(1)], dim=1)
        counts = (batch.offsets[1:] - batch.offsets[:-1]).cpu()
        nbr, _ = _neighbour_table(pos, counts, self.k, self.loop, self.chunk_size)
        return GraphInput(
            x=self.features(batch),
            pos=pos,
            edge_index=_edges(nbr, nbr >= 0),
            batch=event_of_hits(batch),
            num_graphs=len(counts),
        )

    def extra_repr(self) -> str:
        return f"k={self.k}, space_time={self.space_time}, time_scale={self.time_scale:.3g}, loop={self.loop}"


def bench_knn(
    detector: Detector, batch: HitBatch, n_iter: int = 5, k: int = 16, space_time: bool = False
) -> float:
    """Events/s of :class:`GraphBuilder` (features + kNN) on ``batch`` on the batch's device."""
    builder = GraphBuilder(detector, k=k, space_time=space_time).to(batch.offsets.device)
    return events_per_second(builder, batch, n_iter)
