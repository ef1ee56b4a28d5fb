"""Detector-symmetry augmentations of a HitBatch, applied in batch on the device.

A reflection or rotation that maps the detector onto itself maps every PMT onto another PMT, so it acts
on raw hits as a PMT permutation, the same for all representations (images, graphs, points). The
permutations are found once at construction by matching each PMT's transformed position *and* facing
direction to the nearest PMT; a candidate transform is kept only if that matching is a bijection within
tolerance (an exact symmetry). For mPMT detectors this matches the channels inside each module too, so
a module whose internal layout is not symmetric under a transform rules that transform out.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import nn

from recoml.contracts.batch import HitBatch
from recoml.data.normalization import event_of_hits
from recoml.errors import ConfigError
from recoml.families.water_cherenkov.detector import WCDetector

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Symmetry:
    """One candidate transform ``rotation(step) @ flip_y**flip @ reflect_x**reflect`` (tank axis y)."""

    reflect: bool
    flip: bool
    step: int  # rotation about y by step * 2 pi / rotation_steps

    def matrix(self, rotation_steps: int) -> np.ndarray:
        """3x3 matrix acting on column vectors (x, y, z): azimuth atan2(z, x) grows by the rotation."""
        angle = 2 * math.pi * self.step / rotation_steps
        c, s = math.cos(angle), math.sin(angle)
        rot = np.array([[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]])
        flip = np.diag([1.0, -1.0 if self.flip else 1.0, 1.0])
        reflect = np.diag([-1.0 if self.reflect else 1.0, 1.0, 1.0])
        return rot @ flip @ reflect

    def name(self, rotation_steps: int) -> str:
        parts = []
        if self.reflect:
            parts.append("reflect_x")
        if self.flip:
            parts.append("flip_y")
        if self.step:
            parts.append(f"rotate_{round(360 * self.step / rotation_steps)}")
        return "+".join(parts) or "identity"


def pmt_permutation(detector: WCDetector, matrix: np.ndarray, tolerance: float = 1e-3) -> np.ndarray | None:
    """PMT ``k -> k'`` with ``pos[k'] = M pos[k]`` and ``dir[k'] = M dir[k]``, or None if not a symmetry.

    Matching is nearest neighbour in (position / radius, direction) space; accepted when every PMT's
    match is within ``tolerance`` (relative to the radius for positions, absolute for unit directions)
    and no PMT is hit twice. Directions take part so that PMTs sharing a position (mPMTs built with
    ``module_radius=0``) are still told apart.
    """
    scale = float(detector.radius)
    pos = np.asarray(detector.pmt_positions, dtype=np.float64) / scale
    direction = np.asarray(detector.pmt_directions, dtype=np.float64)
    points = np.concatenate([pos, direction], axis=1)
    moved = np.concatenate([pos @ matrix.T, direction @ matrix.T], axis=1)
    dist, index = cKDTree(points).query(moved, k=1)
    dist, index = np.asarray(dist), np.asarray(index)  # arrays for (P, 6) queries; the stub allows scalars
    if not np.all(np.isfinite(dist)):
        return None
    pos_err = np.linalg.norm(points[index, :3] - moved[:, :3], axis=1)
    dir_err = np.linalg.norm(points[index, 3:] - moved[:, 3:], axis=1)
    if pos_err.max() > tolerance or dir_err.max() > tolerance:
        return None
    if len(np.unique(index)) != len(index):
        return None
    return index.astype(np.int64)


def detector_symmetries(
    detector: WCDetector, rotation_steps: int = 4, tolerance: float = 1e-3
) -> dict[Symmetry, np.ndarray]:
    """Every exact symmetry among reflect_x x flip_y x rotations by ``2 pi m / rotation_steps``."""
    found: dict[Symmetry, np.ndarray] = {}
    for step in range(rotation_steps):
        for flip in (False, True):
            for reflect in (False, True):
                sym = Symmetry(reflect, flip, step)
                perm = pmt_permutation(detector, sym.matrix(rotation_steps), tolerance)
                if perm is not None:
                    found[sym] = perm
    return found


class CylinderAugment(nn.Module):
    """Random detector symmetries per event: ``forward(batch, generator=None) -> HitBatch``.

    Independently per event: a reflection x -> -x with probability ``p`` (if ``reflect_x`` and it is a
    symmetry), a top-bottom flip y -> -y with probability ``p`` (if ``flip_y``), and with probability
    ``p`` a rotation about the tank axis by a uniformly chosen non-zero step among the rotations by
    ``2 pi m / rotation_steps`` that are exact symmetries (if ``rotate``). Hits get their PMT id
    permuted; targets ``positions``, ``directions`` (any ``(B, ..., 3)``) are transformed and ``angles``
    recomputed (polar = arccos(d_y), azimuth = atan2(d_z, d_x)). Other fields are copied by reference.

    Acts only in training mode (``module.train()``); in eval mode the batch is returned as is. Given a
    ``torch.Generator`` the draws are deterministic (made on the generator's device, then moved).
    A transform asked for that is not an exact symmetry is left out with a warning (``warn_missing``) or
    an info line (:func:`exact_symmetries`, where nothing was asked for by name).
    """

    #: Buffers (registered in __init__).
    permutations: torch.Tensor
    matrices: torch.Tensor

    def __init__(
        self,
        detector: WCDetector,
        reflect_x: bool = True,
        flip_y: bool = True,
        rotate: bool = True,
        p: float = 0.5,
        rotation_steps: int = 4,
        tolerance: float = 1e-3,
        warn_missing: bool = True,
    ) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ConfigError(f"CylinderAugment: p must be in [0, 1], got {p}")
        if rotation_steps < 1:
            raise ConfigError(f"CylinderAugment: rotation_steps must be >= 1, got {rotation_steps}")
        self.p = float(p)
        self.rotation_steps = int(rotation_steps)
        self.n_pmts = detector.n_pmts
        symmetries = detector_symmetries(detector, self.rotation_steps, tolerance)
        self.reflect_x = reflect_x and Symmetry(True, False, 0) in symmetries
        self.flip_y = flip_y and Symmetry(False, True, 0) in symmetries
        steps = [m for m in range(1, self.rotation_steps) if Symmetry(False, False, m) in symmetries]
        self.rotation_choices: list[int] = steps if rotate else []
        report = log.warning if warn_missing else log.info
        for name, asked, ok in (("reflect_x", reflect_x, self.reflect_x), ("flip_y", flip_y, self.flip_y)):
            if asked and not ok:
                report("detector %s: %s is not an exact symmetry; it is left out", detector.name, name)
        if rotate and len(steps) < self.rotation_steps - 1:
            report(
                "detector %s: only rotations by %s degrees (of every %s) are exact symmetries",
                detector.name,
                [round(360 * m / self.rotation_steps) for m in steps],
                round(360 / self.rotation_steps),
            )
        # Table of every combination (index = (step * 2 + flip) * 2 + reflect); combinations of enabled
        # symmetries are symmetries, the others are never drawn and hold the identity.
        identity = np.arange(self.n_pmts, dtype=np.int64)
        table, matrices, names = [], [], []
        for step in range(self.rotation_steps):
            for flip in (False, True):
                for reflect in (False, True):
                    sym = Symmetry(reflect, flip, step)
                    table.append(symmetries.get(sym, identity))
                    matrices.append(sym.matrix(self.rotation_steps))
                    names.append(sym.name(self.rotation_steps) if sym in symmetries else "")
        self.transform_names: list[str] = names
        self.register_buffer("permutations", torch.as_tensor(np.stack(table)), persistent=False)
        self.register_buffer(
            "matrices", torch.as_tensor(np.stack(matrices), dtype=torch.float32), persistent=False
        )
        log.info(
            "detector %s: augmentations reflect_x=%s flip_y=%s rotations=%s",
            detector.name,
            self.reflect_x,
            self.flip_y,
            [round(360 * m / self.rotation_steps) for m in self.rotation_choices],
        )

    @staticmethod
    def transform_index(reflect: int | bool, flip: int | bool, step: int) -> int:
        """Row of :attr:`permutations` / :attr:`matrices` for one combination."""
        return (int(step) * 2 + int(flip)) * 2 + int(reflect)

    def sample(self, n_events: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(B,)`` int64 transform index per event, drawn on the generator's device (or the CPU)."""
        device = generator.device if generator is not None else torch.device("cpu")
        u = torch.rand(3, n_events, generator=generator, device=device)
        reflect = (u[0] < self.p) & self.reflect_x
        flip = (u[1] < self.p) & self.flip_y
        step = torch.zeros(n_events, dtype=torch.int64, device=device)
        if self.rotation_choices:
            choices = torch.tensor(self.rotation_choices, device=device)
            pick = torch.randint(len(choices), (n_events,), generator=generator, device=device)
            step = torch.where(u[2] < self.p, choices[pick], 0)
        return (step * 2 + flip.long()) * 2 + reflect.long()

    def forward(self, batch: HitBatch, generator: torch.Generator | None = None) -> HitBatch:
        if not self.training:
            return batch
        transform = self.sample(batch.n_events, generator).to(batch.offsets.device)
        return self.transform_batch(batch, transform)

    def transform_batch(self, batch: HitBatch, transform: torch.Tensor) -> HitBatch:
        """Apply transform ``transform[i]`` (rows of :attr:`permutations`) to event ``i``; a new HitBatch."""
        transform = transform.to(device=batch.offsets.device, dtype=torch.int64)
        hits = dict(batch.hits)
        pmt = batch.hits["pmt"]
        per_hit = transform.index_select(0, event_of_hits(batch))
        new_pmt = self.permutations.view(-1).index_select(0, per_hit * self.n_pmts + pmt.long())
        hits["pmt"] = new_pmt.to(pmt.dtype)
        targets = dict(batch.targets)
        matrices = self.matrices.index_select(0, transform)  # (B, 3, 3)
        for name in ("positions", "directions"):
            if name in targets:
                targets[name] = _rotate(matrices, targets[name])
        if "angles" in targets:
            angles = targets["angles"]
            moved = _rotate(matrices, angles_to_direction(angles))
            targets["angles"] = direction_to_angles(moved).to(angles.dtype)
        return HitBatch(hits=hits, offsets=batch.offsets, targets=targets, event_index=batch.event_index)

    def extra_repr(self) -> str:
        rotations = [round(360 * m / self.rotation_steps) for m in self.rotation_choices]
        return f"p={self.p}, reflect_x={self.reflect_x}, flip_y={self.flip_y}, rotations={rotations}"


def _rotate(matrices: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
    """``M_b v`` for every vector of event ``b`` in ``vectors (B, ..., 3)``."""
    flat = vectors.reshape(vectors.shape[0], -1, 3)
    out = torch.einsum("bij,bnj->bni", matrices.to(flat.dtype), flat)
    return out.reshape(vectors.shape)


def angles_to_direction(angles: torch.Tensor) -> torch.Tensor:
    """``(..., 2)`` (polar from +y, azimuth atan2(z, x)) to unit directions ``(..., 3)``."""
    polar, azimuth = angles[..., 0], angles[..., 1]
    s = torch.sin(polar)
    return torch.stack([s * torch.cos(azimuth), torch.cos(polar), s * torch.sin(azimuth)], dim=-1)


def direction_to_angles(direction: torch.Tensor) -> torch.Tensor:
    """Unit directions ``(..., 3)`` to (polar = arccos(d_y), azimuth = atan2(d_z, d_x)) ``(..., 2)``."""
    polar = torch.arccos(direction[..., 1].clamp(-1.0, 1.0))
    azimuth = torch.atan2(direction[..., 2], direction[..., 0])
    return torch.stack([polar, azimuth], dim=-1)


def exact_symmetries(detector: WCDetector, p: float = 0.5) -> CylinderAugment | None:
    """``augment=symmetries`` for a water-Cherenkov tank: every exact symmetry it has among
    :class:`CylinderAugment`'s (none asked for by name, so none missing is worth a warning), or None when
    it has none (an irregular real geometry)."""
    augment = CylinderAugment(detector, p=p, warn_missing=False)
    if not (augment.reflect_x or augment.flip_y or augment.rotation_choices):
        log.info("detector %s has no exact reflection or rotation symmetry: no augmentation", detector.name)
        return None
    return augment
