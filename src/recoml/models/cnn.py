"""ResNets for detector images (water-Cherenkov event displays, ``(B, C, H, W)``).

Detector images are small (WCTE: 38 channels of 14x16 modules) or large (HK: 190x189), so the stem
is configurable: ``"small"`` keeps full resolution (stride 1, no max-pool), ``"imagenet"`` is the
classic 7x7/2 + max-pool for large images. The barrel's azimuth wraps around, so convolutions can pad
circularly along the width (and with zeros along the height) instead of inventing an edge.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from recoml.errors import ConfigError
from recoml.models.encodings import make_fourier
from recoml.models.heads import MLPHead

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "CircularPad2d",
    "CircularWidthConv2d",
    "ResNet",
    "ResNet18",
    "ResNet34",
    "ResNet50",
]


class CircularPad2d(nn.Module):
    """Pad circularly along the width (azimuth) and with ``value`` along the height."""

    def __init__(self, pad_w: int, pad_h: int = 0, value: float = 0.0) -> None:
        super().__init__()
        self.pad_w = int(pad_w)
        self.pad_h = int(pad_h)
        self.value = float(value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad_w:
            if self.pad_w > x.shape[-1]:
                # wrap more than once: concatenate copies (F.pad's circular mode refuses this)
                reps = -(-self.pad_w // x.shape[-1])
                tiled = torch.cat([x] * (2 * reps + 1), dim=-1)
                start = reps * x.shape[-1] - self.pad_w
                x = tiled[..., start : start + x.shape[-1] + 2 * self.pad_w]
            else:
                x = torch.cat([x[..., -self.pad_w :], x, x[..., : self.pad_w]], dim=-1)
        if self.pad_h:
            x = F.pad(x, (0, 0, self.pad_h, self.pad_h), value=self.value)
        return x

    def extra_repr(self) -> str:
        return f"pad_w={self.pad_w}, pad_h={self.pad_h}"


class CircularWidthConv2d(nn.Conv2d):
    """A ``Conv2d`` whose 'same' padding wraps around the width and is zero along the height.

    Subclasses ``nn.Conv2d`` so weights, initialisation and state-dict keys are those of a plain conv
    (a checkpoint trained with zero padding loads into a circular model and vice versa).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        bias: bool = False,
    ) -> None:
        # Zeros along the height are the convolution's own padding (no copy); only the width's wrap-around
        # is materialised, with one concatenation (was: concatenation + F.pad, two copies per activation).
        pad = kernel_size // 2
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=(pad, 0), bias=bias)
        self.pad = CircularPad2d(pad_w=pad, pad_h=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(self.pad(x), self.weight, self.bias)


def conv2d(
    in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, circular: bool = False
) -> nn.Conv2d:
    """A bias-free 'same'-padded conv (followed by BatchNorm), circular along the width if asked."""
    if circular and kernel_size > 1:
        return CircularWidthConv2d(in_channels, out_channels, kernel_size, stride=stride)
    return nn.Conv2d(
        in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2, bias=False
    )


class BasicBlock(nn.Module):
    """Two 3x3 convs with an identity (or 1x1 projection) shortcut: ResNet-18/34."""

    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1, circular: bool = False) -> None:
        super().__init__()
        self.conv1 = conv2d(in_planes, planes, 3, stride, circular)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv2d(planes, planes, 3, 1, circular)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        out = planes * self.expansion
        self.downsample = (
            nn.Sequential(nn.Conv2d(in_planes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out))
            if stride != 1 or in_planes != out
            else None
        )

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride), 1x1 expand by 4: ResNet-50."""

    expansion = 4

    def __init__(self, in_planes: int, planes: int, stride: int = 1, circular: bool = False) -> None:
        super().__init__()
        out = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv2d(planes, planes, 3, stride, circular)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = (
            nn.Sequential(nn.Conv2d(in_planes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out))
            if stride != 1 or in_planes != out
            else None
        )

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


_LAYOUTS: dict[int, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
}


class ResNet(nn.Module):
    """ResNet-18/34/50 for ``(B, C, H, W)`` detector images -> ``(B, out_dim)``.

    Four stages of widths ``width * (1, 2, 4, 8)`` (x4 for Bottleneck), strides 1, 2, 2, 2, then global
    average pooling and an :class:`MLPHead` (``head_hidden=()``: a single linear layer). Any image size
    works: stride-2 stages round up, so a 14x16 WCTE image ends at 2x2 and a 190x189 HK image at 24x24
    (with the small stem). ``zero_init_residual`` starts every block as the identity, which trains
    faster and more stably. Nothing depends on the memory format, so ``channels_last`` inputs work.
    """

    accepts = "image"

    def __init__(
        self,
        in_channels: int,
        out_dim: int,
        depth: int = 18,
        width: int = 64,
        stem: str = "small",
        stem_kernel: int = 3,
        circular_padding: bool = False,
        dropout: float = 0.0,
        zero_init_residual: bool = True,
        head_hidden: int | Sequence[int] | None = (),
        fourier_scales: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if depth not in _LAYOUTS:
            raise ConfigError(f"ResNet depth must be one of {sorted(_LAYOUTS)}, got {depth}")
        if stem not in ("small", "imagenet"):
            raise ConfigError(f"ResNet stem must be 'small' or 'imagenet', got {stem!r}")
        self.in_channels = int(in_channels)
        self.out_dim = int(out_dim)
        self.encoding, c_in = make_fourier(fourier_scales, in_channels, dim=1)
        block, counts = _LAYOUTS[depth]
        circ = bool(circular_padding)

        if stem == "small":
            self.stem = nn.Sequential(
                conv2d(c_in, width, stem_kernel, 1, circ), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
            )
        else:
            pool: nn.Module = (
                nn.Sequential(CircularPad2d(1, 0), nn.MaxPool2d(3, 2, padding=(1, 0)))
                if circ
                else nn.MaxPool2d(3, 2, padding=1)
            )
            self.stem = nn.Sequential(
                conv2d(c_in, width, 7, 2, circ), nn.BatchNorm2d(width), nn.ReLU(inplace=True), pool
            )

        stages: list[nn.Module] = []
        in_planes = width
        for i, n in enumerate(counts):
            planes = width * 2**i
            blocks: list[nn.Module] = []
            for j in range(n):
                blocks.append(block(in_planes, planes, stride=(2 if i > 0 and j == 0 else 1), circular=circ))
                in_planes = planes * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.num_features = in_planes
        self.head = MLPHead(in_planes, out_dim, hidden=head_hidden, dropout=dropout)

        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(m.last_bn().weight)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled image features ``(B, num_features)`` before the head."""
        x = self.stages(self.stem(self.encoding(x)))
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class ResNet18(ResNet):
    """``ResNet(depth=18)`` (BasicBlock, 2-2-2-2), named for configs."""

    def __init__(self, in_channels: int, out_dim: int, **kwargs: object) -> None:
        super().__init__(in_channels, out_dim, depth=18, **kwargs)  # type: ignore[arg-type]


class ResNet34(ResNet):
    """``ResNet(depth=34)`` (BasicBlock, 3-4-6-3), named for configs."""

    def __init__(self, in_channels: int, out_dim: int, **kwargs: object) -> None:
        super().__init__(in_channels, out_dim, depth=34, **kwargs)  # type: ignore[arg-type]


class ResNet50(ResNet):
    """``ResNet(depth=50)`` (Bottleneck, 3-4-6-3), named for configs."""

    def __init__(self, in_channels: int, out_dim: int, **kwargs: object) -> None:
        super().__init__(in_channels, out_dim, depth=50, **kwargs)  # type: ignore[arg-type]
