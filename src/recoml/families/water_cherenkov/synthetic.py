"""Synthetic water-Cherenkov hit batches for benchmarks and tests (no physics: random PMTs and values)."""

from __future__ import annotations

import math

import torch

from recoml.contracts.batch import HitBatch
from recoml.families.water_cherenkov.detector import WCDetector


def random_hit_batch(
    detector: WCDetector,
    n_events: int = 512,
    hits_per_event: int = 300,
    spread: float = 0.2,
    generator: torch.Generator | None = None,
) -> HitBatch:
    """A synthetic batch for benchmarks and tests: hits on distinct random PMTs, random targets.

    Event sizes are uniform in ``hits_per_event * (1 +- spread)`` (capped at the PMT count); charges are
    exponential (mean 2 p.e.), times normal (1000 +- 20 ns); vertices uniform in the tank, directions
    isotropic with consistent ``angles``. Built on the CPU; move it with ``.to(device)``.
    """
    g = generator
    n_pmts = detector.n_pmts
    lo = max(0, min(n_pmts, int(hits_per_event * (1 - spread))))
    hi = max(lo, min(n_pmts, int(math.ceil(hits_per_event * (1 + spread)))))
    counts = torch.randint(lo, hi + 1, (n_events,), generator=g)
    n_max = int(counts.max()) if n_events else 0
    perm = torch.rand(n_events, n_pmts, generator=g).argsort(dim=1)[:, :n_max]
    keep = torch.arange(n_max).unsqueeze(0) < counts.unsqueeze(1)
    pmt = perm[keep]
    n_hits = pmt.shape[0]
    offsets = torch.zeros(n_events + 1, dtype=torch.int64)
    offsets[1:] = torch.cumsum(counts, 0)
    charge = -2.0 * torch.log1p(-torch.rand(n_hits, generator=g))
    time = 1000.0 + 20.0 * torch.randn(n_hits, generator=g)
    direction = torch.randn(n_events, 3, generator=g)
    direction = direction / direction.norm(dim=1, keepdim=True)
    angles = torch.stack(
        [torch.arccos(direction[:, 1].clamp(-1, 1)), torch.atan2(direction[:, 2], direction[:, 0])], 1
    )
    r = detector.radius * torch.sqrt(torch.rand(n_events, generator=g))
    phi = 2 * math.pi * torch.rand(n_events, generator=g)
    y = detector.half_height * (2 * torch.rand(n_events, generator=g) - 1)
    vertex = torch.stack([r * torch.cos(phi), y, r * torch.sin(phi)], 1)
    return HitBatch(
        hits={"pmt": pmt, "charge": charge.float(), "time": time.float()},
        offsets=offsets,
        targets={
            "positions": vertex.float().unsqueeze(1),
            "directions": direction.float().unsqueeze(1),
            "angles": angles.float(),
            "labels": torch.randint(0, 4, (n_events,), generator=g),
            "energies": 100.0 + 900.0 * torch.rand(n_events, 1, generator=g),
        },
        event_index=torch.arange(n_events),
    )
