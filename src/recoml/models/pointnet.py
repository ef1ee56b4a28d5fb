"""PointNet on padded hit clouds ``x (B, Nmax, F)`` + ``mask (B, Nmax)``.

Padded points must never change the answer (events have very different hit counts), so the per-point
MLP uses no batch statistics (LayerNorm or nothing, never BatchNorm across points) and the pooling is
masked; an event with no hits pools to zeros, not NaN.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
from torch import nn

from recoml.errors import ConfigError
from recoml.models.encodings import make_fourier
from recoml.models.heads import MLPHead, as_tuple

__all__ = ["PointInput", "PointNet", "masked_max_mean"]


class PointInput(Protocol):
    """What point models read (``recoml.data.representations`` builds it): padded points and validity."""

    x: torch.Tensor  # (B, Nmax, F)
    mask: torch.Tensor  # (B, Nmax) bool, True for real points


def masked_max_mean(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[max, mean]`` over valid points, ``(B, N, C) -> (B, 2C)``; zeros for events without points."""
    m = mask.unsqueeze(-1)
    count = m.sum(dim=1).to(h.dtype)  # (B, 1)
    hmax = h.masked_fill(~m, float("-inf")).amax(dim=1)
    hmax = torch.where(count > 0, hmax, torch.zeros_like(hmax))
    hmean = h.masked_fill(~m, 0.0).sum(dim=1) / count.clamp(min=1)
    return torch.cat([hmax, hmean], dim=-1)


class PointNet(nn.Module):
    """Shared per-point MLP, masked max+mean pooling, MLP head.

    Graph-level: ``(B, out_dim)``. ``node_level=True`` (hit classification, PointNet segmentation):
    every point's last features are concatenated with the event's pooled features and a per-point head
    gives ``(B, Nmax, out_dim)``, zero at padded points.
    """

    accepts = "points"

    def __init__(
        self,
        in_channels: int,
        out_dim: int,
        hidden: Sequence[int] = (64, 128, 256),
        head_hidden: int | Sequence[int] | None = 128,
        node_level: bool = False,
        dropout: float = 0.0,
        norm: str | None = "layer",
        fourier_scales: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if norm not in ("layer", None):
            raise ConfigError(
                f"PointNet norm must be 'layer' or None (BatchNorm would mix in padding), got {norm!r}"
            )
        self.in_channels = int(in_channels)
        self.out_dim = int(out_dim)
        self.node_level = bool(node_level)
        self.encoding, width = make_fourier(fourier_scales, in_channels)
        widths = as_tuple(hidden)
        if not widths:
            raise ConfigError("PointNet needs at least one hidden width")
        layers: list[nn.Module] = []
        for h in widths:
            layers.append(nn.Linear(width, h))
            if norm == "layer":
                layers.append(nn.LayerNorm(h))
            layers.append(nn.ReLU(inplace=True))
            width = h
        self.point_mlp = nn.Sequential(*layers)
        self.num_features = 2 * width
        head_in = width + 2 * width if self.node_level else 2 * width
        self.head = MLPHead(head_in, out_dim, hidden=head_hidden, dropout=dropout)

    def forward(self, inputs: PointInput) -> torch.Tensor:
        x, mask = inputs.x, inputs.mask.bool()
        # zero padded inputs first: a NaN/inf pad value would otherwise survive masked_fill's gradient
        x = x.masked_fill(~mask.unsqueeze(-1), 0.0)
        h = self.point_mlp(self.encoding(x))  # (B, N, C)
        g = masked_max_mean(h, mask)  # (B, 2C)
        if not self.node_level:
            return self.head(g)
        per_point = torch.cat([h, g.unsqueeze(1).expand(-1, h.shape[1], -1)], dim=-1)
        return self.head(per_point).masked_fill(~mask.unsqueeze(-1), 0.0)
