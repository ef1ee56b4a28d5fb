"""The hit-graph builder of the GNNs: one node per hit, kNN edges within each event.

Neighbours come from :mod:`recoml.data.neighbours` (the one kNN/radius builder): on the CPU without time,
read off each PMT's precomputed list of nearest PMTs (every node is one of the detector's fixed PMTs);
with time, a KD-tree; on a GPU, batched blocks.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.utils.data import get_worker_info

from recoml.contracts.batch import HitBatch
from recoml.contracts.detector import Detector
from recoml.contracts.representation import Representation
from recoml.data.neighbours import (
    SENSOR_TABLE_MAX_SENSORS,
    edges_from_table,
    neighbour_table,
    sensor_neighbour_table,
    sensor_table,
)
from recoml.data.normalization import DEFAULT_FEATURES, FeatureNormalizer, HitFeatures, event_of_hits
from recoml.errors import ConfigError

log = logging.getLogger(__name__)

#: Speed of light in water (n = 1.333), cm/ns: turns hit times into lengths for space-time kNN.
C_WATER_CM_PER_NS: float = 29.9792458 / 1.333


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
    In space on the CPU they are read off each PMT's list of nearest PMTs
    (:func:`~recoml.data.neighbours.sensor_table`, built on the first call in each process or DataLoader
    worker: ~1 CPU-s for WCTE, ~5 for HK), 3-4x faster than a KD-tree per event; detectors of more than
    ``SENSOR_TABLE_MAX_SENSORS`` PMTs keep the KD-tree.

    ``reuse_output=True`` (what the GNN model configs set): the ``edge_index`` returned is **overwritten
    by the next call** in the same process (one buffer, grown when a batch needs more), as
    ``ImageBuilder``'s images are; a training step consumes it before the next batch. Not in DataLoader
    workers (their output goes to the main process).
    """

    #: Buffers (registered in __init__).
    pmt_positions: torch.Tensor

    #: What models consume it declare as their ``representation``.
    builds = "graph"
    builds_in_workers = True

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
        reuse_output: bool = False,
    ) -> None:
        super().__init__()
        self.reuse_output = bool(reuse_output)
        self._edges: torch.Tensor | None = None  # the edge buffer reused by the next call
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
        #: Whether the CPU path reads the PMTs' lists of nearest PMTs (the KD-tree otherwise).
        self.sensor_lists = len(self.pmt_positions) <= SENSOR_TABLE_MAX_SENSORS

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

    def warm_up(self) -> None:
        """The PMTs' lists of nearest PMTs, when the CPU path reads them (HK: ~5 CPU-s, 41 MB)."""
        if self.sensor_lists and not self.space_time and self.pmt_positions.device.type == "cpu":
            sensor_table(self.pmt_positions)

    def forward(self, batch: HitBatch) -> GraphInput:
        pmt = batch.hits["pmt"].long()
        pos = self.pmt_positions.index_select(0, pmt)
        if self.space_time:
            t = batch.hits["time"].to(torch.float32) * self.time_scale
            pos = torch.cat([pos, t.unsqueeze(1)], dim=1)
        counts = (batch.offsets[1:] - batch.offsets[:-1]).cpu()
        if pos.device.type == "cpu" and not self.space_time and self.sensor_lists:
            # Nodes sit on the detector's fixed PMTs: each PMT's nearest PMTs are listed once per process.
            table = sensor_table(self.pmt_positions)
            nbr, _ = sensor_neighbour_table(table, pmt, counts, self.k, self.loop)
        else:
            nbr, _ = neighbour_table(pos, counts, self.k, self.loop, chunk_size=self.chunk_size)
        return GraphInput(
            x=self.features(batch),
            pos=pos,
            edge_index=edges_from_table(nbr, self._edge_buffer(nbr)),
            batch=event_of_hits(batch),
            num_graphs=len(counts),
        )

    def _edge_buffer(self, nbr: torch.Tensor) -> torch.Tensor | None:
        """The reused edge buffer, grown (25% headroom) to hold this batch's edges; None when not reused."""
        if not self.reuse_output or get_worker_info() is not None or torch.jit.is_tracing():
            return None
        need = 2 * nbr.numel()
        buffer = self._edges
        if buffer is None or buffer.numel() < need or buffer.device != nbr.device:
            buffer = self._edges = torch.empty(need + need // 4, dtype=torch.int64, device=nbr.device)
        return buffer

    def extra_repr(self) -> str:
        return f"k={self.k}, space_time={self.space_time}, time_scale={self.time_scale:.3g}, loop={self.loop}"
