"""Output heads shared by every model, so 'the head' means the same thing for CNNs, GNNs and PointNets."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["MLPHead", "as_tuple"]


def as_tuple(hidden: int | Sequence[int] | None) -> tuple[int, ...]:
    """Accept ``128``, ``[128, 64]``, ``()`` or ``None`` from a config and return a tuple of widths."""
    if hidden is None:
        return ()
    if isinstance(hidden, int):
        return (hidden,)
    return tuple(int(h) for h in hidden)


class MLPHead(nn.Module):
    """``Linear -> ReLU -> Dropout`` per hidden width, then a final ``Linear`` to ``out_dim``.

    Works on any leading shape ``(..., in_dim)``, so the same head serves per-event ``(B, F)``,
    per-node ``(N, F)`` and per-point ``(B, N, F)`` features. ``hidden=()`` gives a plain linear layer
    (the classic ResNet head).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        hidden: int | Sequence[int] | None = (128,),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_dim = int(in_dim)
        self.out_dim = int(out_dim)
        layers: list[nn.Module] = []
        width = self.in_dim
        for h in as_tuple(hidden):
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = h
        if dropout > 0 and not layers:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(width, self.out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
