"""The model zoo: CNNs for images, GNNs for hit graphs, PointNets for hit clouds.

Every model has a class attribute ``representation`` ("image" | "graph" | "points"), is built by its
config's ``_target_`` as ``Model(in_channels, out_dim, **options)`` and returns ``(B, out_dim)`` (or per
node/point outputs with ``node_level=True``). Family-specific models (the tracking Interaction Network
and hit embedding) live in their family's package.
"""

from __future__ import annotations

from recoml.models.cnn import ResNet, ResNet18, ResNet34, ResNet50
from recoml.models.encodings import FourierEncoding
from recoml.models.gnn import GAT, GCN, EdgeConvGNN, GraphNet, GraphSAGE
from recoml.models.heads import MLPHead
from recoml.models.pointnet import PointNet

__all__ = [
    "GAT",
    "GCN",
    "EdgeConvGNN",
    "FourierEncoding",
    "GraphNet",
    "GraphSAGE",
    "MLPHead",
    "PointNet",
    "ResNet",
    "ResNet18",
    "ResNet34",
    "ResNet50",
]
