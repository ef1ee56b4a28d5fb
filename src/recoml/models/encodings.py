"""Fixed Fourier-feature encodings of continuous inputs.

Networks with ReLUs learn high-frequency functions of raw coordinates/times slowly (spectral bias);
mapping each input to ``sin/cos(2 pi s x)`` at a few scales ``s`` lets them resolve fine structure
(e.g. hit times at ns precision) without extra parameters.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from recoml.errors import ConfigError

__all__ = ["FourierEncoding", "make_fourier"]


class FourierEncoding(nn.Module):
    """``x (..., F)`` -> ``[x, sin(2 pi s_1 x) .. sin(2 pi s_K x), cos(2 pi s_1 x) .. cos(2 pi s_K x)]``.

    Concatenated along ``dim`` (last by default; ``dim=1`` for images ``(B, C, H, W)``), giving
    ``F * (include_input + 2 K)`` features: block ``j`` of ``F`` features is one function applied to every
    input feature. ``scales`` is a buffer (moves with the module, saved in checkpoints), not a parameter.
    Note that a zero input (an empty pixel) encodes to ``cos = 1``, not to zero.
    """

    scales: torch.Tensor

    def __init__(self, scales: Sequence[float], include_input: bool = True, dim: int = -1) -> None:
        super().__init__()
        scales = [float(s) for s in scales]
        if not scales:
            raise ConfigError("FourierEncoding needs at least one scale")
        self.register_buffer("scales", torch.tensor(scales, dtype=torch.float32), persistent=True)
        self.include_input = bool(include_input)
        self.dim = int(dim)

    @property
    def n_scales(self) -> int:
        return int(self.scales.numel())

    def out_features(self, in_features: int) -> int:
        """Number of features the encoding produces from ``in_features`` inputs."""
        return int(in_features) * (int(self.include_input) + 2 * self.n_scales)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xm = x.movedim(self.dim, -1)
        # (..., F, K): every feature at every scale; the angle in fp32 so that large scales stay accurate
        angle = (2.0 * math.pi) * xm.float().unsqueeze(-1) * self.scales.float()
        parts = [torch.sin(angle), torch.cos(angle)]
        enc = torch.cat(parts, dim=-1).to(x.dtype)  # (..., F, 2K)
        enc = enc.transpose(-1, -2).flatten(-2)  # (..., 2K * F), grouped by function then feature
        if self.include_input:
            enc = torch.cat([xm, enc], dim=-1)
        return enc.movedim(-1, self.dim)

    def extra_repr(self) -> str:
        return f"scales={self.scales.tolist()}, include_input={self.include_input}, dim={self.dim}"


def make_fourier(
    fourier_scales: Sequence[float] | None, in_channels: int, dim: int = -1
) -> tuple[nn.Module, int]:
    """The input encoding a model applies first, and the feature count that comes out of it.

    Models call this so ``in_channels`` (what the representation builder produces) and the width of
    their first layer can never disagree.
    """
    if not fourier_scales:
        return nn.Identity(), int(in_channels)
    enc = FourierEncoding(fourier_scales, include_input=True, dim=dim)
    return enc, enc.out_features(in_channels)
