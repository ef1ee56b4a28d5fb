"""Detector images built from a whole HitBatch with one scatter per quantity, on any device.

A per-event Python image builder in DataLoader workers cannot feed a GPU CNN at ~25,000 events/s; a
batched scatter of the flat hits into a zero tensor can, and runs the same on CPU tensors.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import get_worker_info

from recoml.contracts.batch import HitBatch
from recoml.contracts.representation import Representation
from recoml.data.normalization import FeatureNormalizer, event_of_hits
from recoml.errors import ConfigError
from recoml.families.water_cherenkov.detector import WCDetector

log = logging.getLogger(__name__)

#: Names of the optional geometry channels, in order.
GEOMETRY_CHANNELS: tuple[str, ...] = ("geom_x", "geom_y", "geom_z", "geom_mask")
_REDUCE = {"sum", "amin", "amax"}
#: Bytes of quantity channels a CPU clears and paints at a time (:meth:`ImageBuilder.finish_into`): a few
#: MB stay in the cache between the clear and the paint; 8-16 MB measured alike on HK batches.
_CHUNK_BYTES = 8 << 20


@dataclass
class ImageHits:
    """A batch of images as hits: each hit's flat index in the batch's images (first quantity's block)
    and its value per quantity. What a DataLoader worker hands over instead of the images themselves
    (an HK batch of 256 events is 82 MB of images but 3 MB of hits); ``ImageBuilder.finish`` paints it."""

    index: torch.Tensor  # (H,) int64
    values: list[torch.Tensor]  # one (H,) float32 per quantity, normalized
    n_events: int

    def to(self, *args, **kwargs) -> ImageHits:
        return ImageHits(
            self.index.to(*args, **kwargs), [v.to(*args, **kwargs) for v in self.values], self.n_events
        )

    def pin_memory(self) -> ImageHits:
        return ImageHits(self.index.pin_memory(), [v.pin_memory() for v in self.values], self.n_events)


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

    ``reuse_output=True`` (what the CNN model configs set): the images returned are **overwritten by the
    next call** in the same process, and only the pixels the previous batch wrote are cleared (an HK batch
    of 64 events is 82 MB of images, and a fresh zeroed tensor per batch was 60% of its building time on
    a CPU). A training step consumes its images before the next batch; keep a ``.clone()`` to hold on to
    them. In DataLoader workers a new tensor is made each call; training on a CPU with workers instead
    runs :meth:`prepare` there and :meth:`finish_into` into the loader's shared output slots
    (``recoml.data.slots``), or hands :class:`ImageHits` (hits-sized) to :meth:`finish` in the main
    process.
    """

    #: Buffers (registered in __init__).
    image_pixel: torch.Tensor
    image_channel: torch.Tensor
    pmt_offset: torch.Tensor
    geometry_image: torch.Tensor

    #: What models consume it declare as their ``representation``.
    builds = "image"
    builds_in_workers = True

    def __init__(
        self,
        detector: WCDetector,
        quantities: Sequence[str] = ("charge", "time"),
        geometry_channels: bool = False,
        normalizer: FeatureNormalizer | None = None,
        reduce: Mapping[str, str] | None = None,
        reuse_output: bool = False,
    ) -> None:
        super().__init__()
        self.reuse_output = bool(reuse_output)
        self._buffer: torch.Tensor | None = None  # the last output, reused by the next call
        self._written: torch.Tensor | None = None  # flat indices its last batch wrote (finish_into)
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
        assert detector.image_shape is not None  # detectors with an image map have its shape
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
        return self.finish(self.prepare(batch))

    def prepare(self, batch: HitBatch) -> ImageHits:
        """Each hit's flat index in the images and its normalized values (what workers hand over)."""
        pmt = batch.hits["pmt"].long()
        hw = self.image_shape[0] * self.image_shape[1]
        base = event_of_hits(batch) * (self.out_channels * hw) + self.pmt_offset.index_select(0, pmt)
        values = []
        for name in self.quantities:
            value = batch.hits[name].to(torch.float32)
            values.append(value if self.normalizer is None else self.normalizer(name, value))
        return ImageHits(base, values, len(batch.offsets) - 1)

    def finish(self, prepared: ImageHits | torch.Tensor) -> torch.Tensor:
        """The images: the hits of :meth:`prepare` scattered into zeros (the reused buffer when allowed);
        a tensor is images a DataLoader worker already finished into a shared slot, returned as they are."""
        if isinstance(prepared, torch.Tensor):
            return prepared
        reuse = self.reuse_output and get_worker_info() is None  # a worker's output leaves the worker
        buffer, written = self._buffer, self._written
        if not (
            reuse
            and buffer is not None
            and buffer.device == prepared.index.device
            and buffer.shape[0] >= prepared.n_events
        ):
            buffer = self.new_output(prepared.n_events, prepared.index.device)
            written = prepared.index[:0]  # a new buffer: nothing to clear
        out, self._written = self.finish_into(prepared, buffer, written)
        self._buffer = buffer if reuse else None
        return out

    def new_output(self, n_events: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """All-zero images for ``n_events`` events, geometry channels set."""
        out = torch.zeros((n_events, self.out_channels, *self.image_shape), device=device)
        if self.geometry_channels:
            out[:, self.out_channels - len(self.geometry_image) :] = self.geometry_image
        return out

    def finish_into(
        self, prepared: ImageHits, out: torch.Tensor, written: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Clear the pixels an earlier batch wrote into ``out`` (``written``: its hits' flat indices in the
        first quantity's block; None: every quantity channel), then scatter this batch's hits; returns
        its images (``out[:n_events]``) and its hits' flat indices. The one painting code of in-process
        batches (the reused buffer) and of DataLoader workers' shared slots.

        On a CPU it works through ``out`` a few MB of events at a time (clear, then paint, each chunk):
        an HK batch's 82 MB of images is far beyond the cache, and clearing and painting it whole fetched
        each touched cache line from memory up to five times (1.2x slower alone, 1.3x with two workers
        painting at once: see docs/benchmarks.md)."""
        if out.device.type != "cpu" or out.shape[0] == 0:
            self._paint(prepared.index, prepared.values, out, written, 0, out.shape[0])
            return out[: prepared.n_events], prepared.index
        per_event = out[0].numel()
        hw = self.image_shape[0] * self.image_shape[1]
        quantity_bytes = len(self.quantities) * self.pmts_per_module * hw * out.element_size()
        chunk = max(1, _CHUNK_BYTES // quantity_bytes)
        marks = torch.arange(0, out.shape[0] + chunk, chunk).clamp_(max=out.shape[0])
        # Each event's hits lie in its own block of flat indices, in event order: a search for the
        # blocks' starts finds each chunk's hits (the order within an event does not matter).
        new = torch.searchsorted(prepared.index, marks * per_event).tolist()
        old = [] if written is None else torch.searchsorted(written, marks * per_event).tolist()
        events = marks.tolist()
        for c in range(len(events) - 1):
            lo, hi = new[c], new[c + 1]
            index, values = prepared.index[lo:hi], [v[lo:hi] for v in prepared.values]
            previous = None if written is None else written[old[c] : old[c + 1]]
            self._paint(index, values, out, previous, events[c], events[c + 1])
        return out[: prepared.n_events], prepared.index

    def _paint(
        self,
        index: torch.Tensor,
        values: list[torch.Tensor],
        out: torch.Tensor,
        written: torch.Tensor | None,
        first: int,
        stop: int,
    ) -> None:
        """Clear events ``first:stop`` of ``out`` (``written``: the flat indices to clear; None: their
        quantity channels whole), then scatter the hits at flat ``index``, all in those events."""
        step = self.pmts_per_module * self.image_shape[0] * self.image_shape[1]  # one quantity's block
        flat = out.view(-1)
        if written is None:
            out[first:stop, : len(self.quantities) * self.pmts_per_module].zero_()
        elif len(written):
            # scatter_ of a broadcast constant: 1.7x faster than index_fill_ on a CPU, the same result.
            zeros = out.new_zeros(1).expand(len(written))
            for q in range(len(self.quantities)):
                flat.scatter_(0, written + q * step if q else written, zeros)
        if not len(index):
            return
        for q, (name, value) in enumerate(zip(self.quantities, values)):
            at = index + q * step if q else index
            reduce = self.reduce[name]
            if reduce == "sum":
                flat.scatter_add_(0, at, value)
            else:
                # Pixels with hits start at +-inf and keep the extreme hit: 1.6x faster on a CPU than
                # include_self=False, and the same result (every such pixel gets at least one hit).
                start = out.new_full((1,), float("inf") if reduce == "amin" else float("-inf"))
                flat.scatter_(0, at, start.expand(len(at)))
                flat.scatter_reduce_(0, at, value, reduce, include_self=True)

    def extra_repr(self) -> str:
        return (
            f"quantities={self.quantities}, image_shape={self.image_shape}, "
            f"out_channels={self.out_channels}, reduce={self.reduce}"
        )


def _geometry_image(detector: WCDetector) -> torch.Tensor:
    """``(4, H, W)``: module position over the tank size and a module mask (see :class:`ImageBuilder`)."""
    assert detector.image_shape is not None  # only built for detectors with an image map
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
