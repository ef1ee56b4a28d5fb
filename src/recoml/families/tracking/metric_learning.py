"""Metric-learning graph construction: training pairs, the hinge loss, and the embedding-space graph.

Training (acorn's recipe): positives are the truth-graph edges, negatives are random same-event pairs and
the *hard negatives* found in a radius graph of the current embedding. With squared distances ``d``, the
loss is ``mean_w(d | positive) + mean_w(max(0, margin^2 - d) | negative)``. Inference: a radius graph of
radius ``r`` (at most ``k`` neighbours per hit) in the embedding, edges oriented outwards.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from recoml import load_model
from recoml.data.neighbours import radius_graph
from recoml.errors import ConfigError
from recoml.families.tracking.construction import orient_edges
from recoml.families.tracking.detector import TrackerDetector
from recoml.families.tracking.graph import TrackGraphBuilder
from recoml.families.tracking.hits import TrackHits
from recoml.families.tracking.models.metric_learning import HitEmbedding
from recoml.families.tracking.truth import EdgeWeighting, HitTruth, edge_truth

__all__ = ["EmbeddingConstructor", "embedding_graph", "hinge_loss", "training_pairs"]

log = logging.getLogger(__name__)


@torch.no_grad()
def embedding_graph(
    embedding: torch.Tensor, hits: TrackHits, r: float, k: int, chunk_size: int | None = None
) -> torch.Tensor:
    """Radius graph (radius ``r``, at most ``k`` neighbours) in the embedding, edges pointing outwards."""
    if hits.num_hits == 0:
        return torch.zeros(2, 0, dtype=torch.int64, device=embedding.device)
    edges = radius_graph(
        embedding.detach().float(), hits.batch, r=r, max_num_neighbors=k, chunk_size=chunk_size
    )
    return orient_edges(edges, hits.pos)


def training_pairs(
    embedding: torch.Tensor,
    hits: TrackHits,
    truth: HitTruth,
    weighting: EdgeWeighting,
    r_train: float,
    knn_train: int,
    randomisation: float = 1.0,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(pairs (2, P), y (P,), weight (P,))``: truth edges, hard negatives and random same-event pairs."""
    device = embedding.device
    parts = [truth.truth_index]
    if knn_train > 0 and hits.num_hits > 1:
        parts.append(embedding_graph(embedding, hits, r_train, knn_train))
    n_random = int(randomisation * hits.num_hits)
    if n_random > 0 and hits.num_hits > 1:
        counts = (hits.offsets[1:] - hits.offsets[:-1]).to(device)
        i = torch.randint(hits.num_hits, (n_random,), device=device, generator=generator)
        b = hits.batch[i]
        j = (
            hits.offsets.to(device)[b]
            + (torch.rand(n_random, device=device, generator=generator) * counts[b]).long()
        )
        parts.append(torch.stack([i, j]))
    pairs = torch.cat(parts, dim=1)
    pairs = pairs[:, pairs[0] != pairs[1]]
    y, _, weight = edge_truth(pairs, truth, weighting)
    return pairs, y, weight


def hinge_loss(
    embedding: torch.Tensor, pairs: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, margin: float
) -> torch.Tensor:
    """Weighted mean of ``d`` over positives plus of ``max(0, margin^2 - d)`` over negatives (``d``: squared
    distance)."""
    d = (embedding[pairs[0]] - embedding[pairs[1]]).square().sum(-1)
    pos = y & (weight > 0)
    neg = ~y & (weight > 0)
    loss = embedding.sum() * 0.0  # keeps the graph (and the device) when a part is empty
    if bool(pos.any()):
        loss = loss + (weight[pos] * d[pos]).sum() / weight[pos].sum()
    if bool(neg.any()):
        loss = loss + (weight[neg] * torch.relu(margin**2 - d[neg])).sum() / weight[neg].sum()
    return loss


class EmbeddingConstructor(nn.Module):
    """Candidate edges from a trained metric-learning stage: its hit features and embedding (frozen), then
    :func:`embedding_graph`. The stage's checkpoint must come from ``experiment=tracking/metric_learning`` on
    the same detector; its weights are copied into this module (and so into the next stage's checkpoint).
    """

    def __init__(
        self, detector: TrackerDetector, checkpoint: str | None, r: float = 0.1, k: int = 50
    ) -> None:
        super().__init__()

        if not checkpoint:
            raise ConfigError(
                "model.representation.constructors.embedding.checkpoint is not set: give the last.ckpt of an "
                "experiment=tracking/metric_learning run"
            )
        path = Path(checkpoint)
        if not path.is_file():
            raise ConfigError(
                f"constructor.checkpoint: no metric-learning checkpoint at {path} "
                "(train one with experiment=tracking/metric_learning)"
            )
        stage = load_model(str(path))
        cfg = stage.hparams.get("config", {})
        if not isinstance(stage.net, HitEmbedding) or not isinstance(stage.representation, TrackGraphBuilder):
            raise ConfigError(
                f"constructor.checkpoint: {path} was trained for task={cfg.get('task', {}).get('name')}, "
                f"model={cfg.get('model', {}).get('name')}; the embedding constructor needs a checkpoint of "
                "experiment=tracking/metric_learning (a HitEmbedding on a TrackGraphBuilder)"
            )
        if stage.detector.name != detector.name:
            raise ConfigError(
                f"constructor.checkpoint: {path} was trained on detector={stage.detector.name}, this run "
                "uses "
                f"detector={detector.name}"
            )
        self.checkpoint = str(path)
        self.r = float(r)
        self.k = int(k)
        self.stage_features = stage.representation
        self.stage_features.constructor = None
        self.embedding = stage.net
        for p in self.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> EmbeddingConstructor:  # always frozen
        return super().train(False)

    def forward(self, hits: TrackHits) -> torch.Tensor:
        x = self.stage_features.node_features(hits)
        return embedding_graph(self.embedding.embed(x), hits, self.r, self.k)

    def extra_repr(self) -> str:
        return f"checkpoint={self.checkpoint}, r={self.r}, k={self.k}"
