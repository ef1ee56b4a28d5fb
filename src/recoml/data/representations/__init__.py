"""On-device representations of a HitBatch for any detector: graphs (GNN) and point clouds (PointNet).
Images need a detector family's image map (water Cherenkov: :mod:`recoml.families.water_cherenkov.images`).

Every builder is an ``nn.Module`` holding the detector geometry as buffers, so ``builder.to(device)``
and ``builder(batch)`` work the same on CPU and CUDA tensors (Lightning's ``on_after_batch_transfer``).
"""

from __future__ import annotations

from recoml.data.representations.graphs import (
    C_WATER_CM_PER_NS,
    GraphBuilder,
    GraphInput,
)
from recoml.data.representations.points import PointCloudBuilder, PointInput

__all__ = [
    "C_WATER_CM_PER_NS",
    "GraphBuilder",
    "GraphInput",
    "PointCloudBuilder",
    "PointInput",
]
