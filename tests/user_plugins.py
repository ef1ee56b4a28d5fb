"""Classes a user would write in their own package, plugged in by ``_target_`` in the tests."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch import nn


class TinyImageNet(nn.Module):
    """A user's own image model: any nn.Module taking (in_channels, out_dim)."""

    representation = "image"

    def __init__(self, in_channels: int, out_dim: int, hidden: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, hidden, 3, padding=1)
        self.head = nn.Linear(hidden, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))


class CountingCallback(pl.Callback):
    batches = 0

    def on_train_batch_end(self, *args, **kwargs) -> None:
        CountingCallback.batches += 1
