"""Export-friendly views of a trained model: raw inputs in, physical outputs out, normalization inside.

* :class:`ImageExport` (CNNs): input ``image (B, C, H, W)``, the representation's image built from raw
  hit values (no normalization; pixels and channels without a hit are 0, geometry channels as built).
  The graph applies the fitted per-quantity normalization (``log1p`` for charge, then standardization)
  to the occupied entries, exactly what the training representation does per hit, so a detector with at
  most one hit per PMT and event (digitized data) gives the training-time inputs bit for bit. A PMT is
  occupied when any of its quantities is nonzero: one quantity alone cannot tell, since a hit may carry
  a value of exactly 0 (the hit that fires a trigger has trigger-relative time 0).
* :class:`GraphExport` (EdgeConv GNNs): inputs ``x (N, F)`` raw node features in
  ``feature_names`` order, ``edge_index (2, E)`` int64 ([neighbour, centre], the kNN graph the
  representation builds), ``batch (N,)`` int64 event of each node (events numbered ``0..B-1``; the
  output has ``max(batch) + 1`` rows). PyG's ``EdgeConv`` and pooling are replaced by gather + a row
  scatter with a reduction (ONNX ``ScatterND``, opset >= 18), which export and run on onnxruntime.

Both return the task's predictions in physical units (class probabilities, MeV, cm, unit vectors, hit
probabilities) as a tuple in :attr:`output_names` order.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from recoml.contracts.batch import HitBatch
from recoml.errors import ConfigError
from recoml.models.gnn import EdgeConvGNN


def _output_names(module: Any) -> list[str]:
    task = module.task
    probe = task.predict(torch.zeros(2, task.out_dim))
    return [k.replace("/", ".") for k in probe]


class _Export(nn.Module):
    """Shared parts: the network, the task's output transform, the output names."""

    input_names: tuple[str, ...] = ()

    def __init__(self, module: Any) -> None:
        super().__init__()
        self.net = copy.deepcopy(module.net).eval()
        self.task = copy.deepcopy(module.task).eval()
        self.output_names = _output_names(module)
        self.node_level = bool(module.task.node_level)

    def outputs(self, raw: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self.task.predict(raw).values())

    def inputs(self, batch: HitBatch) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        raise NotImplementedError

    def feature_names(self) -> list[str]:
        raise NotImplementedError


def _column_stats(normalizer: Any, names: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    mean = torch.stack([normalizer.stats(n)[0].float() for n in names])
    std = torch.stack([normalizer.stats(n)[1].float() for n in names])
    log = torch.tensor([n in normalizer.log_features for n in names])
    return mean, std, log


class ImageExport(_Export):
    """``image (B, C, H, W)`` raw -> predictions; see the module docstring."""

    #: Buffers (registered in __init__).
    mean: torch.Tensor
    std: torch.Tensor
    log_mask: torch.Tensor
    normalized: torch.Tensor

    input_names = ("image",)

    def __init__(self, module: Any) -> None:
        super().__init__(module)
        builder = module.representation
        normalizer = builder.normalizer
        self.raw_builder = copy.deepcopy(builder)
        self.raw_builder.normalizer = None
        ppm = builder.pmts_per_module
        n_geo = len(builder.geometry_image)
        names = [q for q in builder.quantities for _ in range(ppm)]
        c = len(names) + n_geo
        mean, std, log = torch.zeros(c), torch.ones(c), torch.zeros(c, dtype=torch.bool)
        normalized = torch.zeros(c, dtype=torch.bool)
        if normalizer is not None:
            m, s, lg = _column_stats(normalizer, names)
            mean[: len(names)], std[: len(names)], log[: len(names)] = m, s, lg
            normalized[: len(names)] = True
        shape = (1, c, 1, 1)
        self.register_buffer("mean", mean.view(shape))
        self.register_buffer("std", std.view(shape))
        self.register_buffer("log_mask", log.view(shape))
        self.register_buffer("normalized", normalized.view(shape))
        self._names = list(builder.feature_names)
        self.image_shape = tuple(builder.image_shape)
        self.channels = c
        self.n_quantities, self.pmts_per_module = len(builder.quantities), ppm

    def occupancy(self, image: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` bool: the PMT behind each quantity channel has a hit (any quantity nonzero);
        geometry channels False."""
        nq, ppm = self.n_quantities, self.pmts_per_module
        height, width = self.image_shape
        hit = image[:, : nq * ppm].abs().reshape(-1, nq, ppm, height, width).sum(1) > 0
        geometry = torch.zeros_like(image[:, nq * ppm :], dtype=torch.bool)
        return torch.cat([hit.repeat(1, nq, 1, 1), geometry], dim=1)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        occupied = self.occupancy(image)
        x = torch.where(self.log_mask, torch.log1p(image.clamp(min=0)), image)
        x = (x - self.mean) / self.std
        x = torch.where(occupied & self.normalized, x, image)
        return self.outputs(self.net(x))

    @torch.no_grad()
    def inputs(self, batch: HitBatch) -> tuple[torch.Tensor, ...]:
        return (self.raw_builder(batch),)

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        return {"image": {0: "events"}} | {n: {0: "events"} for n in self.output_names}

    def feature_names(self) -> list[str]:
        return self._names


#: ONNX reduction names of torch's scatter_reduce modes.
_ONNX_REDUCTION = {"sum": "add", "amax": "max", "amin": "min", "prod": "mul"}


class _RowScatter(torch.autograd.Function):
    """``base.scatter_reduce(0, index[:, None].expand_as(src), src, reduce)``: whole rows of ``src`` reduced
    into rows ``index`` of ``base``.

    Exported as ONNX ``ScatterND`` with a reduction (row indices ``(E, 1)``), which onnxruntime runs
    ~60x faster than the ``ScatterElements`` that ``scatter_reduce`` exports to (one index per element).
    """

    @staticmethod
    def forward(ctx, base: torch.Tensor, index: torch.Tensor, src: torch.Tensor, reduce: str) -> torch.Tensor:
        return base.scatter_reduce(0, index.unsqueeze(1).expand_as(src), src, reduce, include_self=True)

    @staticmethod
    def symbolic(g, base, index, src, reduce: str):
        rows = g.op("Unsqueeze", index, g.op("Constant", value_t=torch.tensor([1], dtype=torch.int64)))
        return g.op("ScatterND", base, rows, src, reduction_s=_ONNX_REDUCTION[reduce])


def _scatter(src: torch.Tensor, index: torch.Tensor, rows: torch.Tensor, reduce: str) -> torch.Tensor:
    """Reduce rows of ``src`` into ``len(rows)`` rows by ``index`` (``rows`` only gives the dynamic size).

    Rows that receive nothing are 0, as in PyG. Export-friendly: a reduction onto an identity-filled
    tensor (ONNX has no ``include_self=False``).
    """
    width = src.shape[1]
    base = rows.unsqueeze(1).to(src.dtype) * 0.0 + torch.zeros_like(src[:1, :width])  # (R, F) zeros
    if reduce == "max":
        out = _RowScatter.apply(base - float("inf"), index, src, "amax")
        return torch.where(torch.isinf(out), torch.zeros_like(out), out)
    total = _RowScatter.apply(base, index, src, "sum")
    if reduce in ("add", "sum"):
        return total
    if reduce == "mean":
        count = _RowScatter.apply(base[:, :1], index, torch.ones_like(src[:, :1]), "sum")
        return total / count.clamp(min=1.0)
    raise ConfigError(f"export: aggregation '{reduce}' is not supported (max, mean, add)")


class GraphExport(_Export):
    """``(x, edge_index, batch)`` -> predictions for :class:`~recoml.models.gnn.EdgeConvGNN`."""

    #: Buffers (registered in __init__).
    mean: torch.Tensor
    std: torch.Tensor
    log_mask: torch.Tensor

    input_names = ("x", "edge_index", "batch")

    def __init__(self, module: Any) -> None:

        net = module.net
        if not isinstance(net, EdgeConvGNN):
            raise ConfigError(
                f"export: graph model {type(net).__name__} has no export-friendly version yet; "
                "EdgeConvGNN (model=gnn) exports"
            )
        if net.dynamic:
            raise ConfigError(
                "export: EdgeConvGNN with dynamic=true rebuilds kNN graphs inside the network, which ONNX "
                "cannot take as an input; export a model trained with dynamic=false (model=gnn)"
            )
        super().__init__(module)
        builder = module.representation
        features = builder.features
        self.raw_features = copy.deepcopy(features)
        self.raw_features.normalizer = None
        self.builder = builder
        self._names = list(features.feature_names)
        mean, std, log = (
            _column_stats(features.normalizer, self._names)
            if features.normalizer is not None
            else (
                torch.zeros(len(self._names)),
                torch.ones(len(self._names)),
                torch.zeros(len(self._names), dtype=torch.bool),
            )
        )
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.register_buffer("log_mask", log)
        self.k = builder.k
        self.space_time = builder.space_time
        self.time_scale = builder.time_scale

    def forward(
        self, x: torch.Tensor, edge_index: torch.Tensor, batch: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        x = torch.where(self.log_mask, torch.log1p(x.clamp(min=0)), x)
        # A 0-dim tensor end keeps the graph count dynamic in the ONNX trace; torch's stub wants a number.
        graphs = torch.arange(batch.max() + 1, device=batch.device)  # type: ignore[call-overload]
        raw = self.net.forward_tensors((x - self.mean) / self.std, edge_index, batch, graphs, _scatter)
        return self.outputs(raw)

    @torch.no_grad()
    def inputs(self, batch: HitBatch) -> tuple[torch.Tensor, ...]:
        graph = self.builder(batch)
        return (self.raw_features(batch), graph.edge_index, graph.batch)

    def dynamic_axes(self) -> dict[str, dict[int, str]]:
        rows = "hits" if self.node_level else "events"
        return {"x": {0: "hits"}, "edge_index": {1: "edges"}, "batch": {0: "hits"}} | {
            n: {0: rows} for n in self.output_names
        }

    def feature_names(self) -> list[str]:
        return self._names


def export_model(module: Any) -> _Export:
    """The export view of a trained module, by the kind of its representation."""
    kind = module.representation.builds
    if kind == "image":
        return ImageExport(module).eval()
    if kind == "graph":
        return GraphExport(module).eval()
    raise ConfigError(
        f"export: models on '{kind}' inputs ({type(module.net).__name__}) do not export yet; "
        "image models (resnet*) and EdgeConv GNNs (model=gnn) do"
    )
