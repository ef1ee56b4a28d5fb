"""Tracker hits on the device: coordinates, global layer/module indices and truth, from a HitBatch.

The event store keeps what a detector reads out (``hit_x/y/z`` in mm, TrackML ``volume_id``/``layer_id``/
``module_id``) and, when simulated or labelled, the truth (``hit_particle_id``, 0 for noise, and the true
momentum at the hit ``hit_tpx/tpy``). :class:`TrackerGeometry` turns the ids into the dense layer and module
indices of the detector with table lookups that run on any device.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from recoml.contracts.batch import HitBatch
from recoml.errors import DataError, GeometryError
from recoml.families.tracking.detector import TrackerDetector

__all__ = [
    "COORDINATE_FIELDS",
    "TRUTH_FIELDS",
    "TrackHits",
    "TrackerGeometry",
    "require_hit_fields",
]

#: What every tracking stage reads (batch keys, without the store's ``hit_`` prefix).
COORDINATE_FIELDS: tuple[str, ...] = ("x", "y", "z", "volume_id", "layer_id")
#: Truth: the particle of each hit (0 = noise) and the true momentum there (GeV).
TRUTH_FIELDS: tuple[str, ...] = ("particle_id", "tpx", "tpy")


def require_hit_fields(batch: HitBatch, names: Sequence[str], stage: str) -> None:
    """DataError naming the store fields a stage needs and the batch lacks."""
    missing = [n for n in names if n not in batch.hits]
    if missing:
        raise DataError(
            f"{stage} needs hit fields {['hit_' + n for n in missing]} that the batch does not hold "
            f"(it has {['hit_' + k for k in sorted(batch.hits)]}); add them to dataset.hit_fields or use a "
            "store that has them"
        )


@dataclass
class TrackHits:
    """The hits of a batch of events, flat; event ``i`` owns rows ``offsets[i]:offsets[i+1]``.

    ``particle_id`` and ``pt`` (true pT of the hit's particle; 0 for noise) are None without truth.
    """

    pos: torch.Tensor  # (N, 3) mm
    layer: torch.Tensor  # (N,) global layer index
    module: torch.Tensor | None  # (N,) global module index
    batch: torch.Tensor  # (N,) event of each hit
    offsets: torch.Tensor  # (B + 1,)
    particle_id: torch.Tensor | None = None
    pt: torch.Tensor | None = None

    @property
    def num_hits(self) -> int:
        return self.pos.shape[0]

    @property
    def num_events(self) -> int:
        return self.offsets.shape[0] - 1

    @property
    def has_truth(self) -> bool:
        return self.particle_id is not None

    @property
    def r(self) -> torch.Tensor:
        return torch.hypot(self.pos[:, 0], self.pos[:, 1])

    @property
    def phi(self) -> torch.Tensor:
        return torch.atan2(self.pos[:, 1], self.pos[:, 0])

    @property
    def z(self) -> torch.Tensor:
        return self.pos[:, 2]


class TrackerGeometry(nn.Module):
    """Id lookup tables and per-layer numbers of a :class:`TrackerDetector` as (non-persistent) buffers."""

    #: Buffers (registered in __init__).
    lookup: torch.Tensor
    module_offset: torch.Tensor
    layer_r_max: torch.Tensor
    layer_r_min: torch.Tensor

    def __init__(self, detector: TrackerDetector) -> None:
        super().__init__()
        if not isinstance(detector, TrackerDetector):
            raise GeometryError(
                f"detector '{getattr(detector, 'name', detector)}' is not a tracker; tracking needs "
                "detector=toy_tracker or detector=trackml"
            )
        self.name = detector.name
        self.bfield = detector.bfield
        self.n_layers = detector.n_layers
        self.n_modules = detector.n_modules
        self.envelope_radius = detector.radius
        self.envelope_half_length = detector.half_height
        buffers = {
            "lookup": torch.as_tensor(detector.lookup, dtype=torch.int64),
            "module_offset": torch.as_tensor(detector.module_offset, dtype=torch.int64),
            "layer_r_max": torch.as_tensor(detector.layer_r_max, dtype=torch.float32),
            "layer_r_min": torch.as_tensor(detector.layer_r_min, dtype=torch.float32),
        }
        for name, value in buffers.items():
            self.register_buffer(name, value, persistent=False)

    def layer_of(self, volume_id: torch.Tensor, layer_id: torch.Tensor) -> torch.Tensor:
        """Global layer index; GeometryError for ids the detector does not have."""
        vol, lay = volume_id.long(), layer_id.long()
        inside = (vol >= 0) & (vol < self.lookup.shape[0]) & (lay >= 0) & (lay < self.lookup.shape[1])
        out = torch.full_like(vol, -1)
        out[inside] = self.lookup[vol[inside], lay[inside]]
        bad = out < 0
        if bool(bad.any()):
            i = int(torch.nonzero(bad)[0, 0])
            raise GeometryError(
                f"hits: (volume_id, layer_id) = ({int(vol[i])}, {int(lay[i])}) is not a layer of detector "
                f"'{self.name}' ({int(bad.sum())} such hits); the geometry does not match the data"
            )
        return out

    def module_of(self, layer: torch.Tensor, module_id: torch.Tensor) -> torch.Tensor:
        """Dense global module index (module ids are 1-based within their layer)."""
        n = self.module_offset[layer + 1] - self.module_offset[layer]
        mid = module_id.long()
        bad = (mid < 1) | (mid > n)
        if bool(bad.any()):
            i = int(torch.nonzero(bad)[0, 0])
            raise GeometryError(
                f"hits: module_id {int(mid[i])} outside 1..{int(n[i])} on global layer {int(layer[i])} of "
                f"detector '{self.name}'"
            )
        return self.module_offset[layer] + mid - 1

    def hits(self, batch: HitBatch, truth: bool | None = None, stage: str = "tracking") -> TrackHits:
        """:class:`TrackHits` of a batch; ``truth=None`` reads truth when present, ``True`` demands it."""
        require_hit_fields(batch, COORDINATE_FIELDS, stage)
        h = batch.hits
        pos = torch.stack([h["x"], h["y"], h["z"]], dim=1).to(torch.float32)
        layer = self.layer_of(h["volume_id"], h["layer_id"])
        module = self.module_of(layer, h["module_id"]) if "module_id" in h else None
        counts = batch.offsets[1:] - batch.offsets[:-1]
        events = torch.repeat_interleave(
            torch.arange(len(counts), device=pos.device), counts, output_size=pos.shape[0]
        )
        has = all(k in h for k in TRUTH_FIELDS)
        if truth and not has:
            require_hit_fields(batch, TRUTH_FIELDS, f"{stage} (truth)")
        particle_id = pt = None
        if has and truth is not False:
            particle_id = h["particle_id"].long()
            pt = torch.hypot(h["tpx"].float(), h["tpy"].float())
            pt = torch.where(particle_id == 0, torch.zeros_like(pt), pt)
        return TrackHits(pos, layer, module, events, batch.offsets, particle_id, pt)
