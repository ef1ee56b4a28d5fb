"""The Interaction Network edge classifier of the GNN tracking pipeline (acorn's ``InteractionGNN``).

Node and edge encoders, ``n_iterations`` rounds of message passing with residual updates (edges from
their two hits and themselves, hits from the sums of their incoming and outgoing edges), and an edge
decoder giving one logit per edge. Aggregation is ``scatter_add`` (no torch-scatter), so the core
:class:`InteractionNetwork` runs on any device and exports to ONNX (both exporters) with plain tensor inputs.

:class:`EdgeClassifier` is what the trainer builds: it reads a
:class:`~recoml.families.tracking.graph.TrackGraph` (``accepts = "track_graph"``) and returns an
:class:`~recoml.families.tracking.graph.EdgeOutput` that keeps the graph, so the task finds the edge truth.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from recoml.errors import ConfigError
from recoml.families.tracking.graph import EdgeOutput

__all__ = ["EDGE_CHUNK", "EdgeClassifier", "InteractionNetwork", "make_mlp"]

#: Edges per block of the edge MLPs on a CPU. Each block's activations (16,384 x 64 float32 = 4 MiB) stay
#: in the cache and the allocator's heap; whole-graph activations (a 100k-hit event has a million edges,
#: hundreds of MB per layer) went to fresh pages at every layer: 2.4x slower per edge (measured, see
#: docs/benchmarks.md). A GPU takes the whole graph at once (blocks would only add kernel launches).
EDGE_CHUNK: int = 16384


def make_mlp(
    in_dim: int,
    hidden: Sequence[int],
    out_dim: int,
    layer_norm: bool = True,
    output_activation: bool = False,
) -> nn.Sequential:
    """``Linear [-> LayerNorm] -> SiLU`` per hidden width, then ``Linear`` (optionally normed, activated)."""
    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden:
        layers.append(nn.Linear(width, h))
        if layer_norm:
            layers.append(nn.LayerNorm(h))
        layers.append(nn.SiLU())
        width = h
    layers.append(nn.Linear(width, out_dim))
    if output_activation:
        if layer_norm:
            layers.append(nn.LayerNorm(out_dim))
        layers.append(nn.SiLU())
    return nn.Sequential(*layers)


def _sum_at(x: torch.Tensor, index: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Sum of ``values`` rows per ``index`` (shape of ``x``). ``scatter_add`` rather than ``index_add_``:
    the TorchScript ONNX exporter turns ``index_add_`` into a ScatterND that drops repeated indices, but
    ``scatter_add`` into ScatterElements(reduction=add)."""
    return torch.zeros_like(x).scatter_add(0, index.unsqueeze(-1).expand_as(values), values)


def _edge_mlp(
    net: nn.Module,
    x: torch.Tensor,
    src: torch.Tensor,
    dst: torch.Tensor,
    e: torch.Tensor | None,
    residual: bool = False,
) -> torch.Tensor:
    """``net(cat([x[src], x[dst], e]))`` (plus ``e`` when ``residual``) without building the ``(E, 2H + D)``
    concatenation, in blocks of :data:`EDGE_CHUNK` edges.

    The first layer is linear, so it is split by input block: the two node blocks are applied once per
    node (``N`` rows, not ``E``) and gathered, the edge block once per edge. Same weights and state-dict
    keys as the concatenating form, same outputs to float rounding; a third of the first layer's
    multiply-adds per edge and no ``(E, 3H)`` buffer (speed-up measured in docs/benchmarks.md). Off the
    CPU, traced or compiled (ONNX export, torch.compile) it runs as one block (the edge count stays
    dynamic in an export).
    """
    layers = list(net.children())  # a make_mlp Sequential: Linear first
    first = layers[0]
    assert isinstance(first, nn.Linear)
    width = x.shape[-1]
    weight = first.weight
    out = first.out_features
    # (N, 2 * out): each node's contribution as a source and as a destination, in one matmul.
    per_node = nn.functional.linear(x, torch.cat([weight[:, :width], weight[:, width : 2 * width]]))
    from_src, from_dst = per_node[:, :out], per_node[:, out:]
    edge_weight = weight[:, 2 * width :]

    def block(s: torch.Tensor, d: torch.Tensor, eb: torch.Tensor | None) -> torch.Tensor:
        y = from_src.index_select(0, s)
        if eb is not None:  # one (E, out) pass for the edge block and the bias, then the two node blocks
            y = y.add_(nn.functional.linear(eb, edge_weight, first.bias))
        elif first.bias is not None:
            y = y.add_(first.bias)
        y = y.add_(from_dst.index_select(0, d))
        for layer in layers[1:]:
            y = layer(y)
        return y + eb if residual and eb is not None else y

    n_edges = len(src)
    whole = x.device.type != "cpu" or torch.jit.is_tracing() or torch.compiler.is_compiling()
    if n_edges <= EDGE_CHUNK or whole:
        return block(src, dst, e)
    return torch.cat(
        [
            block(
                src[i : i + EDGE_CHUNK], dst[i : i + EDGE_CHUNK], None if e is None else e[i : i + EDGE_CHUNK]
            )
            for i in range(0, n_edges, EDGE_CHUNK)
        ]
    )


class InteractionNetwork(nn.Module):
    """``forward(x (N, F), edge_index (2, E), edge_attr (E, D) | None) -> logits (E,)``.

    ``hidden``: width of hit and edge latents; ``n_layers``: hidden layers per MLP; ``n_iterations``:
    message-passing rounds (weights shared across rounds when ``shared_weights``). ``checkpointing`` trades
    compute for memory on large graphs in training.
    """

    def __init__(
        self,
        in_channels: int,
        edge_channels: int = 0,
        hidden: int = 64,
        n_layers: int = 2,
        n_iterations: int = 8,
        shared_weights: bool = False,
        layer_norm: bool = True,
        checkpointing: bool = False,
    ) -> None:
        super().__init__()
        if n_iterations < 1 or hidden < 1 or n_layers < 0:
            raise ConfigError("InteractionNetwork: n_iterations and hidden must be >= 1, n_layers >= 0")
        self.in_channels = int(in_channels)
        self.edge_channels = int(edge_channels)
        self.hidden = int(hidden)
        self.n_iterations = int(n_iterations)
        self.checkpointing = bool(checkpointing)
        h = [self.hidden] * n_layers
        self.node_encoder = make_mlp(self.in_channels, h, self.hidden, layer_norm, output_activation=True)
        self.edge_encoder = make_mlp(
            2 * self.hidden + self.edge_channels, h, self.hidden, layer_norm, output_activation=True
        )
        n_nets = 1 if shared_weights else self.n_iterations
        self.node_nets = nn.ModuleList(
            make_mlp(3 * self.hidden, h, self.hidden, layer_norm, output_activation=True)
            for _ in range(n_nets)
        )
        self.edge_nets = nn.ModuleList(
            make_mlp(3 * self.hidden, h, self.hidden, layer_norm, output_activation=True)
            for _ in range(n_nets)
        )
        self.decoder = make_mlp(3 * self.hidden, h, 1, layer_norm)

    def _round(self, i: int, x: torch.Tensor, e: torch.Tensor, src: torch.Tensor, dst: torch.Tensor):
        node_net = self.node_nets[i % len(self.node_nets)]
        edge_net = self.edge_nets[i % len(self.edge_nets)]
        incoming = _sum_at(x, dst, e)
        outgoing = _sum_at(x, src, e)
        x = x + node_net(torch.cat([x, incoming, outgoing], dim=-1))
        e = _edge_mlp(edge_net, x, src, dst, e, residual=True)
        return x, e

    def forward(
        self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor | None = None
    ) -> torch.Tensor:
        src, dst = edge_index[0], edge_index[1]
        h = self.node_encoder(x)
        attr = None
        if self.edge_channels:
            if edge_attr is None or edge_attr.shape[-1] != self.edge_channels:
                got = None if edge_attr is None else edge_attr.shape[-1]
                raise ConfigError(f"InteractionNetwork expects {self.edge_channels} edge features, got {got}")
            attr = edge_attr.to(h.dtype)
        e = _edge_mlp(self.edge_encoder, h, src, dst, attr)
        for i in range(self.n_iterations):
            if self.checkpointing and self.training:
                h, e = checkpoint(self._round, i, h, e, src, dst, use_reentrant=False)
            else:
                h, e = self._round(i, h, e, src, dst)
        return _edge_mlp(self.decoder, h, src, dst, e).squeeze(-1)


class EdgeClassifier(nn.Module):
    """The trainer-facing wrapper: ``TrackGraph -> EdgeOutput(logits, graph)``.

    Built as ``EdgeClassifier(in_channels=..., out_dim=1, edge_channels=..., **InteractionNetwork options)``;
    ``edge_channels`` defaults to what the graph carries (checked at the first call).
    """

    accepts = "track_graph"

    def __init__(self, in_channels: int, out_dim: int = 1, edge_channels: int = 0, **options) -> None:
        super().__init__()
        if out_dim != 1:
            raise ConfigError(f"EdgeClassifier gives one logit per edge; the task asks for out_dim={out_dim}")
        self.network = InteractionNetwork(in_channels, edge_channels=edge_channels, **options)

    def forward(self, graph):  # noqa: ANN001, ANN201 - TrackGraph -> EdgeOutput (import cycle otherwise)

        return EdgeOutput(self.network(graph.x, graph.edge_index, graph.edge_attr), graph)
