"""The model zoo: CNNs for images, GNNs for hit graphs, PointNets for hit clouds.

Every model has a class attribute ``representation`` ("image" | "graph" | "points"), is built as
``Model(in_channels, out_dim, **options)`` and returns ``(B, out_dim)`` (or per node/point outputs with
``node_level=True``). :data:`MODELS` maps short config names to classes.
"""

from __future__ import annotations

from torch import nn

from recoml.errors import ConfigError
from recoml.models.cnn import ResNet, ResNet18, ResNet34, ResNet50
from recoml.models.encodings import FourierEncoding
from recoml.models.gnn import GAT, GCN, EdgeConvGNN, GraphInput, GraphNet, GraphSAGE
from recoml.models.heads import MLPHead
from recoml.models.interaction_network import EdgeClassifier, InteractionNetwork
from recoml.models.metric_learning import HitEmbedding
from recoml.models.pointnet import PointInput, PointNet

__all__ = [
    "GAT",
    "GCN",
    "MODELS",
    "EdgeClassifier",
    "EdgeConvGNN",
    "FourierEncoding",
    "GraphInput",
    "GraphNet",
    "GraphSAGE",
    "HitEmbedding",
    "InteractionNetwork",
    "MLPHead",
    "PointInput",
    "PointNet",
    "ResNet",
    "ResNet18",
    "ResNet34",
    "ResNet50",
    "build_model",
]

#: short names (as used in ``recoml/conf/model/*.yaml`` and on the command line) -> model classes
MODELS: dict[str, type[nn.Module]] = {
    "resnet": ResNet,
    "resnet18": ResNet18,
    "resnet34": ResNet34,
    "resnet50": ResNet50,
    "pointnet": PointNet,
    "edgeconv": EdgeConvGNN,
    "dgcnn": EdgeConvGNN,
    "graphnet": GraphNet,
    "gcn": GCN,
    "gat": GAT,
    "sage": GraphSAGE,
}


def build_model(name: str, in_channels: int, out_dim: int, **options: object) -> nn.Module:
    """Build a model by its short name (the Hydra route is ``_target_``; this one is for scripts)."""
    try:
        cls = MODELS[name.lower()]
    except KeyError:
        raise ConfigError(f"unknown model {name!r}; known: {sorted(MODELS)}") from None
    return cls(in_channels, out_dim, **options)
