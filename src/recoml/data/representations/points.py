"""Padded point clouds ``(B, Nmax, F)`` + mask from a HitBatch, built with one index_put on any device."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from recoml.contracts.batch import HitBatch
from recoml.contracts.detector import Detector
from recoml.contracts.representation import Representation
from recoml.data.normalization import DEFAULT_FEATURES, FeatureNormalizer, HitFeatures, event_of_hits
from recoml.errors import ConfigError


@dataclass
class PointInput:
    """A batch of point clouds padded to the largest event (``Nmax >= 1`` so pooling never sees 0 points)."""

    x: torch.Tensor  # (B, Nmax, F) float32, zeros on padding
    mask: torch.Tensor  # (B, Nmax) bool, True for real points
    index: torch.Tensor  # (B, Nmax) int64 row of each point in the HitBatch's hit arrays, -1 on padding

    def to(self, *args, **kwargs) -> PointInput:
        return PointInput(
            x=self.x.to(*args, **kwargs),
            mask=self.mask.to(*args, **kwargs),
            index=self.index.to(*args, **kwargs),
        )


class PointCloudBuilder(Representation):
    """``forward(batch) -> PointInput``: each event's hits as points with ``features``.

    Points keep the hits' order. With ``max_points`` set, events with more hits keep their
    ``max_points`` highest-charge hits (the light that carries the ring pattern; low-charge hits are
    mostly dark noise), and then every event's points are ordered by decreasing charge.
    ``index`` maps points back to hits (for per-hit targets of hit classification).
    """

    #: What models consume it declare as their ``representation``.
    builds = "points"
    builds_in_workers = True

    def __init__(
        self,
        detector: Detector,
        features: Sequence[str] = DEFAULT_FEATURES,
        max_points: int | None = None,
        normalizer: FeatureNormalizer | None = None,
        time_reference: str = "none",
    ) -> None:
        super().__init__()
        if max_points is not None and max_points < 1:
            raise ConfigError(f"PointCloudBuilder: max_points must be >= 1 or None, got {max_points}")
        self.max_points = max_points
        self.features = HitFeatures(detector, features, normalizer, time_reference)
        self.time_reference = time_reference

    @property
    def feature_names(self) -> tuple[str, ...]:
        return self.features.feature_names

    @property
    def normalized_features(self) -> tuple[str, ...]:
        return tuple(self.feature_names)

    def input_dims(self) -> dict[str, int]:
        return {"in_channels": self.out_channels}

    @property
    def out_channels(self) -> int:
        """Point feature width ``F``."""
        return len(self.feature_names)

    def forward(self, batch: HitBatch) -> PointInput:
        x = self.features(batch)
        device = x.device
        n_hits = x.shape[0]
        n_events = len(batch.offsets) - 1
        offsets = batch.offsets
        event = event_of_hits(batch)
        counts = offsets[1:] - offsets[:-1]
        rows = torch.arange(n_hits, device=device)
        n_max = int(counts.max()) if n_events else 0  # the one host sync: the padded size
        if self.max_points is not None and n_max > self.max_points:
            # Group hits by event, highest charge first: two stable sorts (charge, then event).
            charge = batch.hits["charge"]
            rows = torch.argsort(charge, descending=True, stable=True)
            rows = rows[torch.argsort(event[rows], stable=True)]
            n_max = self.max_points
        slot = torch.arange(n_hits, device=device) - offsets[:-1].index_select(0, event)
        keep = slot < n_max
        event, slot, rows = event[keep], slot[keep], rows[keep]
        n_max = max(n_max, 1)
        out = torch.zeros(n_events, n_max, x.shape[1], device=device, dtype=torch.float32)
        mask = torch.zeros(n_events, n_max, device=device, dtype=torch.bool)
        index = torch.full((n_events, n_max), -1, device=device, dtype=torch.int64)
        out.index_put_((event, slot), x.index_select(0, rows))
        mask.index_put_((event, slot), torch.ones_like(slot, dtype=torch.bool))
        index.index_put_((event, slot), rows)
        return PointInput(x=out, mask=mask, index=index)

    def extra_repr(self) -> str:
        return f"features={self.feature_names}, max_points={self.max_points}"
