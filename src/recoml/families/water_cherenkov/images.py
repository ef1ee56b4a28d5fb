"""Detector images built from a whole HitBatch with one scatter per quantity, on any device.

A per-event Python image builder in DataLoader workers cannot feed a GPU CNN at ~25,000 events/s; a
batched scatter of the flat hits into a zero tensor can, and runs the same on CPU tensors.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from recoml.contracts.batch import HitBatch
from recoml.contracts.representation import Representation
from recoml.data.normalization import FeatureNormalizer, event_of_hits
from recoml.errors import ConfigError
from recoml.families.water_cherenkov.detector import WCDetector
from recoml.utils.timing import events_per_second

log = logging.getLogger(__name__)

#: Names of the optional geometry channels, in order.
GEOMETRY_CHANNELS: tuple[str, ...] = ("geom_x", "geom_y", "geom_z", "geom_mask")
_REDUCE = {"sum", "amin", "amax"}


class ImageBuilder(Representation):
    """``forward(batch) -> (B, C, H, W)`` float32 images of the detector's 2D map.

    Channel ``q * pmts_per_module + c`` holds quantity ``quantities[q]`` of the PMT that is channel ``c`` of
    the module at each pixel (``image_pixel``/``image_channel`` of :class:`WCDetector`). Pixels and
    channels without a hit are 0 (also after normalization, which applies to the hit values only).

    Several hits on one PMT in an event are combined by ``reduce[quantity]``: ``"sum"`` (default; charge
    totals are kept), ``"amin"`` (default for ``time``: the first hit) or ``"amax"``.

    ``geometry_channels=True`` appends 4 constant channels, the same for every event (CoordConv-style, so
    a translation-equivariant CNN knows where on the detector a pixel is): ``geom_x = x / radius``,
    ``geom_y = y / half_height``, ``geom_z = z / radius`` of the module (mean of its PMTs' positions) and
    ``geom_mask`` = 1 where a module exists (0 on the unused corners around the end caps).
    """

    #: Buffers (registered in __init__).
    image_pixel: torch.Tensor
    image_channel: torch.Tensor
    pmt_offset: torch.Tensor
    geometry_image: torch.Tensor

    #: What models consume it declare as their ``representation``.
    builds = "image"

    def __init__(
        self,
        detector: WCDetector,
        quantities: Sequence[str] = ("charge", "time"),
        geometry_channels: bool = False,
        normalizer: FeatureNormalizer | None = None,
        reduce: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.quantities: tuple[str, ...] = tuple(quantities)
        if not self.quantities:
            raise ConfigError("ImageBuilder: at least one quantity is needed")
        if normalizer is not None:
            missing = [q for q in self.quantities if q not in normalizer]
            if missing:
                raise ConfigError(f"ImageBuilder: the normalizer has no statistics for {missing}")
        self.reduce: dict[str, str] = {q: ("amin" if q == "time" else "sum") for q in self.quantities}
        self.reduce.update(dict(reduce or {}))
        bad = {q: r for q, r in self.reduce.items() if r not in _REDUCE}
        if bad:
            raise ConfigError(f"ImageBuilder: reduce must be one of {sorted(_REDUCE)}, got {bad}")
        self.normalizer = normalizer
        if getattr(detector, "image_pixel", None) is None:
            raise ConfigError(
                f"detector {detector.name} has no image map "
                f"({getattr(detector, 'image_map_note', '') or 'its family provides none'}); "
                "use a graph or point-cloud model (model=gnn, model=pointnet)"
            )
        self.pmts_per_module = int(detector.pmts_per_module)
        self.image_shape: tuple[int, int] = (int(detector.image_shape[0]), int(detector.image_shape[1]))
        self.geometry_channels = bool(geometry_channels)
        # Geometry is rebuilt from the detector config: keep it out of checkpoints.
        self.register_buffer(
            "image_pixel", torch.as_tensor(detector.image_pixel, dtype=torch.int64), persistent=False
        )
        channel = torch.arange(detector.n_pmts, dtype=torch.int64) % self.pmts_per_module
        self.register_buffer("image_channel", channel, persistent=False)
        # Flat offset of PMT k inside one event's first-quantity block: channel * H*W + pixel.
        hw = self.image_shape[0] * self.image_shape[1]
        self.register_buffer("pmt_offset", channel * hw + self.image_pixel, persistent=False)
        geom = _geometry_image(detector) if self.geometry_channels else torch.zeros(0, *self.image_shape)
        self.register_buffer("geometry_image", geom, persistent=False)

    @property
    def normalized_features(self) -> tuple[str, ...]:
        return tuple(self.quantities)

    def input_dims(self) -> dict[str, int]:
        return {"in_channels": self.out_channels}

    @property
    def out_channels(self) -> int:
        return len(self.quantities) * self.pmts_per_module + len(self.geometry_image)

    @property
    def feature_names(self) -> list[str]:
        """One name per channel: ``<quantity>`` (``<quantity>_<channel>`` for mPMTs), then geometry."""
        if self.pmts_per_module == 1:
            names = list(self.quantities)
        else:
            names = [f"{q}_{c}" for q in self.quantities for c in range(self.pmts_per_module)]
        return names + (list(GEOMETRY_CHANNELS) if self.geometry_channels else [])

    def forward(self, batch: HitBatch) -> torch.Tensor:
        pmt = batch.hits["pmt"].long()
        n_events = len(batch.offsets) - 1
        height, width = self.image_shape
        hw = height * width
        n_chan = self.out_channels
        ppm = self.pmts_per_module
        out = torch.zeros(n_events, n_chan, height, width, device=pmt.device, dtype=torch.float32)
        if self.geometry_channels:
            out[:, n_chan - len(self.geometry_image) :] = self.geometry_image
        flat = out.view(-1)
        base = event_of_hits(batch) * (n_chan * hw) + self.pmt_offset.index_select(0, pmt)
        for q, name in enumerate(self.quantities):
            values = batch.hits[name].to(torch.float32)
            if self.normalizer is not None:
                values = self.normalizer(name, values)
            index = base + q * ppm * hw if q else base
            if self.reduce[name] == "sum":
                flat.scatter_add_(0, index, values)
            else:
                flat.scatter_reduce_(0, index, values, self.reduce[name], include_self=False)
        return out

    def extra_repr(self) -> str:
        return (
            f"quantities={self.quantities}, image_shape={self.image_shape}, "
            f"out_channels={self.out_channels}, reduce={self.reduce}"
        )


def _geometry_image(detector: WCDetector) -> torch.Tensor:
    """``(4, H, W)``: module position over the tank size and a module mask (see :class:`ImageBuilder`)."""
    height, width = detector.image_shape
    pix = np.asarray(detector.image_pixel, dtype=np.int64)
    pos = np.asarray(detector.pmt_positions, dtype=np.float64)
    sums = np.zeros((height * width, 3))
    counts = np.zeros(height * width)
    np.add.at(sums, pix, pos)
    np.add.at(counts, pix, 1.0)
    centre = sums / np.maximum(counts, 1)[:, None]
    scale = np.array([detector.radius, detector.half_height, detector.radius])
    image = np.concatenate([centre / scale, (counts > 0)[:, None]], axis=1).T.reshape(4, height, width)
    return torch.as_tensor(image, dtype=torch.float32)


def bench_images(detector: WCDetector, batch: HitBatch, n_iter: int = 20, **builder_kwargs) -> float:
    """Events/s of :class:`ImageBuilder` on ``batch`` (on the batch's device; one warm-up call)."""
    builder = ImageBuilder(detector, **builder_kwargs).to(batch.offsets.device)
    return events_per_second(builder, batch, n_iter)
