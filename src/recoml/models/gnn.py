"""Graph neural networks on hit graphs (``GraphInput``: flat nodes + ``edge_index`` + ``batch``).

``EdgeConvGNN`` is DGCNN (static edges from the graph builder, or kNN rebuilt in feature space after
each layer); ``GraphNet`` is a generic residual message-passing stack where the convolution is a name
or any callable ``conv(in, out, **kw)``, so a config can pick any PyG conv by ``_target_`` (with
``_partial_: true``) without editing recoml. Only plain-torch/PyG code that needs none of PyG's
compiled extras (torch-cluster, torch-scatter, pyg-lib) is used; kNN comes from :mod:`recoml.data.neighbours`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, cast

import torch
from torch import nn
from torch_geometric.nn import (
    EdgeConv,
    GATConv,
    GATv2Conv,
    GCNConv,
    GINConv,
    GraphConv,
    SAGEConv,
    TransformerConv,
)
from torch_geometric.nn.conv import MessagePassing

from recoml.data.neighbours import knn_graph
from recoml.errors import ConfigError
from recoml.models.encodings import make_fourier
from recoml.models.heads import MLPHead

__all__ = [
    "CONVS",
    "GAT",
    "GCN",
    "EdgeConvGNN",
    "GraphInput",
    "GraphNet",
    "GraphSAGE",
]


class GraphInput(Protocol):
    """What graph models read (``recoml.data.representations`` builds it)."""

    x: torch.Tensor  # (N, F) node features
    pos: torch.Tensor  # (N, 3 or 4) coordinates used for graph building
    edge_index: torch.Tensor  # (2, E): row 0 source/neighbour, row 1 target/centre (PyG convention)
    batch: torch.Tensor  # (N,) graph of each node
    num_graphs: int


def _norm(kind: str | None, width: int) -> nn.Module:
    if kind is None or kind == "none":
        return nn.Identity()
    if kind == "batch":
        return nn.BatchNorm1d(width)
    if kind == "layer":
        return nn.LayerNorm(width)
    raise ConfigError(f"norm must be 'batch', 'layer' or None, got {kind!r}")


def _edge_mlp(in_dim: int, out_dim: int) -> nn.Sequential:
    """The edge function of EdgeConv, applied to ``[x_i, x_j - x_i]``."""
    return nn.Sequential(nn.Linear(2 * in_dim, out_dim), nn.ReLU(inplace=True), nn.Linear(out_dim, out_dim))


#: ``scatter(src, index, rows, reduce)``: rows of ``src (E, F)`` reduced by ``index (E,)`` into
#: ``len(rows)`` rows (``rows`` is any 1-D tensor of that length: a dynamic size for ONNX traces).
Scatter = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, str], torch.Tensor]


def scatter_rows(src: torch.Tensor, index: torch.Tensor, rows: torch.Tensor, reduce: str) -> torch.Tensor:
    """PyG's aggregation in plain torch (differentiable): rows that receive nothing are 0."""
    out = src.new_zeros(rows.shape[0], src.shape[1])
    mode = {"max": "amax", "add": "sum", "sum": "sum", "mean": "mean", "min": "amin"}.get(reduce)
    if mode is None:
        raise ConfigError(f"unknown aggregation {reduce!r} (max, mean, add, min)")
    return out.scatter_reduce(0, index.unsqueeze(1).expand_as(src), src, mode, include_self=False)


def _pool(h: torch.Tensor, batch: torch.Tensor, graphs: torch.Tensor, scatter: Scatter) -> torch.Tensor:
    """Per-graph ``[max, mean]`` of node features; empty graphs give zeros."""
    return torch.cat([scatter(h, batch, graphs, "max"), scatter(h, batch, graphs, "mean")], dim=-1)


class EdgeConvGNN(nn.Module):
    """DGCNN: ``n_layers`` EdgeConvs, features of all layers concatenated, global max+mean pool, MLP head.

    ``dynamic=False`` uses the ``edge_index`` given by the graph builder in every layer (kNN on ``pos``
    with ``k`` if it is ``None``); ``dynamic=True`` uses it in the first layer and rebuilds a kNN graph
    (per event) in the current feature space before each later layer. ``node_level=True`` returns
    ``(N, out_dim)``: each node's features concatenated with its graph's pooled features.
    """

    accepts = "graph"

    def __init__(
        self,
        in_channels: int,
        out_dim: int,
        hidden: int = 64,
        n_layers: int = 3,
        k: int = 16,
        dynamic: bool = False,
        aggr: str = "max",
        node_level: bool = False,
        dropout: float = 0.0,
        norm: str | None = "batch",
        head_hidden: int | Sequence[int] | None = 128,
        fourier_scales: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if n_layers < 1:
            raise ConfigError("EdgeConvGNN needs n_layers >= 1")
        self.in_channels = int(in_channels)
        self.out_dim = int(out_dim)
        self.k = int(k)
        self.dynamic = bool(dynamic)
        self.node_level = bool(node_level)
        self.encoding, width = make_fourier(fourier_scales, in_channels)
        self.convs = nn.ModuleList()
        self.post = nn.ModuleList()
        for _ in range(n_layers):
            self.convs.append(EdgeConv(_edge_mlp(width, hidden), aggr=aggr))
            post: list[nn.Module] = [_norm(norm, hidden), nn.ReLU(inplace=True)]
            if dropout > 0:
                post.append(nn.Dropout(dropout))
            self.post.append(nn.Sequential(*post))
            width = hidden
        node_dim = n_layers * hidden
        self.num_features = 2 * node_dim
        head_in = node_dim + 2 * node_dim if self.node_level else 2 * node_dim
        self.head = MLPHead(head_in, out_dim, hidden=head_hidden, dropout=dropout)

    def forward(self, inputs: GraphInput) -> torch.Tensor:
        edge_index = inputs.edge_index
        if edge_index is None:
            edge_index = knn_graph(inputs.pos, inputs.batch, self.k)
        graphs = torch.arange(int(inputs.num_graphs), device=inputs.batch.device)
        return self.forward_tensors(inputs.x, edge_index, inputs.batch, graphs)

    def forward_tensors(
        self,
        x: torch.Tensor,
        edge_index: torch.Tensor,
        batch: torch.Tensor,
        graphs: torch.Tensor,
        scatter: Scatter = scatter_rows,
    ) -> torch.Tensor:
        """The network on plain tensors (``graphs``: any 1-D tensor, one entry per event). Training calls
        it with :func:`scatter_rows`, ONNX export with an export-friendly scatter: one forward for both."""
        h = self.encoding(x)
        feats = []
        for i, (conv, post) in enumerate(zip(self.convs, self.post)):
            if self.dynamic and i > 0:
                edge_index = knn_graph(h, batch, self.k)
            edge_conv = cast(EdgeConv, conv)
            source, centre = edge_index[0], edge_index[1]
            x_i = h.index_select(0, centre)
            message = edge_conv.nn(torch.cat([x_i, h.index_select(0, source) - x_i], dim=-1))
            h = post(scatter(message, centre, batch, str(edge_conv.aggr)))
            feats.append(h)
        h = torch.cat(feats, dim=-1)
        g = _pool(h, batch, graphs, scatter)
        if not self.node_level:
            return self.head(g)
        return self.head(torch.cat([h, g.index_select(0, batch)], dim=-1))


ConvFactory = Callable[..., MessagePassing]


def _gat(in_dim: int, out_dim: int, **kw: Any) -> MessagePassing:
    return GATv2Conv(in_dim, out_dim, **kw)


def _gat_v1(in_dim: int, out_dim: int, **kw: Any) -> MessagePassing:
    return GATConv(in_dim, out_dim, **kw)


def _edgeconv(in_dim: int, out_dim: int, aggr: str = "max") -> MessagePassing:
    return EdgeConv(_edge_mlp(in_dim, out_dim), aggr=aggr)


def _gin(in_dim: int, out_dim: int, **kw: Any) -> MessagePassing:
    mlp = nn.Sequential(nn.Linear(in_dim, out_dim), nn.ReLU(inplace=True), nn.Linear(out_dim, out_dim))
    return GINConv(mlp, **kw)


#: convolutions ``GraphNet(conv=...)`` knows by name; anything else goes in as a callable.
CONVS: dict[str, ConvFactory] = {
    "gcn": GCNConv,
    "gat": _gat,
    "gatv2": _gat,
    "gat_v1": _gat_v1,
    "sage": SAGEConv,
    "graphconv": GraphConv,
    "transformer": TransformerConv,
    "edgeconv": _edgeconv,
    "gin": _gin,
}


def _out_per_head(conv: ConvFactory, hidden: int, kwargs: Mapping[str, Any]) -> int:
    """Width to ask of a multi-head conv so that its concatenated output is still ``hidden`` wide."""
    merged = {**dict(getattr(conv, "keywords", None) or {}), **kwargs}
    heads = int(merged.get("heads", 1) or 1)
    if heads <= 1 or merged.get("concat", True) is False:
        return hidden
    if hidden % heads:
        raise ConfigError(f"hidden={hidden} must be divisible by heads={heads} (heads are concatenated)")
    return hidden // heads


class GraphNet(nn.Module):
    """A residual stack of any PyG message-passing layer: encoder, ``n_layers`` x conv, pool, head.

    Every layer maps ``hidden -> hidden`` (multi-head convs with concatenated heads are asked for
    ``hidden // heads`` per head), then norm, ReLU, dropout and a residual connection. ``conv`` is a
    name in :data:`CONVS` or a callable called as ``conv(hidden, hidden, **conv_kwargs)``, e.g. Hydra's
    ``{_target_: torch_geometric.nn.TransformerConv, _partial_: true, heads: 2}``. Convs whose
    ``forward`` takes ``pos`` also get the node positions.
    """

    accepts = "graph"

    def __init__(
        self,
        in_channels: int,
        out_dim: int,
        conv: str | ConvFactory = "gcn",
        hidden: int = 64,
        n_layers: int = 3,
        norm: str | None = "batch",
        residual: bool = True,
        dropout: float = 0.0,
        node_level: bool = False,
        conv_kwargs: Mapping[str, Any] | None = None,
        head_hidden: int | Sequence[int] | None = 128,
        fourier_scales: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if isinstance(conv, str):
            if conv not in CONVS:
                raise ConfigError(f"unknown conv {conv!r}; known: {sorted(CONVS)} (or pass a callable)")
            factory = CONVS[conv]
        elif callable(conv):
            factory = conv
        else:
            raise TypeError(f"conv must be a name or a callable, got {type(conv).__name__}")
        kwargs = dict(conv_kwargs or {})
        self.in_channels = int(in_channels)
        self.out_dim = int(out_dim)
        self.node_level = bool(node_level)
        self.residual = bool(residual)
        self.encoding, width = make_fourier(fourier_scales, in_channels)
        self.encoder = nn.Sequential(nn.Linear(width, hidden), nn.ReLU(inplace=True))
        out = _out_per_head(factory, hidden, kwargs)
        self.convs = nn.ModuleList(factory(hidden, out, **kwargs) for _ in range(n_layers))
        self.post = nn.ModuleList()
        for _ in range(n_layers):
            post: list[nn.Module] = [_norm(norm, hidden), nn.ReLU(inplace=True)]
            if dropout > 0:
                post.append(nn.Dropout(dropout))
            self.post.append(nn.Sequential(*post))
        self._takes_pos = ["pos" in inspect.signature(c.forward).parameters for c in self.convs]
        self.num_features = 2 * hidden
        head_in = 3 * hidden if self.node_level else 2 * hidden
        self.head = MLPHead(head_in, out_dim, hidden=head_hidden, dropout=dropout)

    def forward(self, inputs: GraphInput) -> torch.Tensor:
        batch, n_graphs, edge_index = inputs.batch, int(inputs.num_graphs), inputs.edge_index
        h = self.encoder(self.encoding(inputs.x))
        for conv, post, takes_pos in zip(self.convs, self.post, self._takes_pos):
            if takes_pos:
                m = conv(x=h, pos=inputs.pos, edge_index=edge_index)
            else:
                m = conv(h, edge_index)
            m = post(m)
            h = h + m if self.residual else m
        g = _pool(h, batch, torch.arange(n_graphs, device=h.device), scatter_rows)
        if not self.node_level:
            return self.head(g)
        return self.head(torch.cat([h, g[batch]], dim=-1))


class GCN(GraphNet):
    """``GraphNet(conv="gcn")`` (Kipf & Welling), named for configs."""

    def __init__(self, in_channels: int, out_dim: int, **kwargs: Any) -> None:
        super().__init__(in_channels, out_dim, conv="gcn", **kwargs)


class GAT(GraphNet):
    """``GraphNet(conv="gat")``: GATv2 with ``heads`` concatenated to ``hidden`` (``v2=False``: GATConv)."""

    def __init__(
        self, in_channels: int, out_dim: int, heads: int = 4, v2: bool = True, **kwargs: Any
    ) -> None:
        conv_kwargs = {"heads": heads, **dict(kwargs.pop("conv_kwargs", None) or {})}
        super().__init__(
            in_channels, out_dim, conv="gat" if v2 else "gat_v1", conv_kwargs=conv_kwargs, **kwargs
        )


class GraphSAGE(GraphNet):
    """``GraphNet(conv="sage")`` (Hamilton et al., mean aggregation by default), named for configs."""

    def __init__(self, in_channels: int, out_dim: int, **kwargs: Any) -> None:
        super().__init__(in_channels, out_dim, conv="sage", **kwargs)
