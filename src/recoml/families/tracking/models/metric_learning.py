"""The hit embedding of metric-learning graph construction (acorn's ``MetricLearning`` stage).

An MLP maps each hit's features to a point in a ``emb_dim``-dimensional space where hits of one track are
close; a radius / kNN graph there is the candidate graph (:class:`recoml.families.tracking.metric_learning.
EmbeddingConstructor`). Trained with a hinge loss
(:class:`recoml.families.tracking.tasks.MetricLearningTask`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from recoml.errors import ConfigError
from recoml.families.tracking.graph import EmbeddingOutput
from recoml.families.tracking.models.interaction_network import make_mlp

__all__ = ["HitEmbedding"]


class HitEmbedding(nn.Module):
    """``TrackGraph -> EmbeddingOutput``; :meth:`embed` is the plain ``(N, F) -> (N, emb_dim)`` map."""

    accepts = "track_graph"

    def __init__(
        self,
        in_channels: int,
        out_dim: int = 12,
        hidden: int = 256,
        n_layers: int = 4,
        layer_norm: bool = True,
        normalize: bool = False,
    ) -> None:
        super().__init__()
        if out_dim < 1 or hidden < 1 or n_layers < 1:
            raise ConfigError("HitEmbedding: out_dim, hidden and n_layers must be >= 1")
        self.emb_dim = int(out_dim)
        self.normalize = bool(normalize)
        self.mlp = make_mlp(int(in_channels), [int(hidden)] * int(n_layers), self.emb_dim, layer_norm)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        e = self.mlp(x)
        return F.normalize(e, dim=-1) if self.normalize else e

    def forward(self, graph):  # noqa: ANN001, ANN201 - TrackGraph -> EmbeddingOutput

        return EmbeddingOutput(self.embed(graph.x), graph)
