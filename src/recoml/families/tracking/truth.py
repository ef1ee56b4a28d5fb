"""Edge truth: the true track graph of an event, which particles are targets, and per-edge labels and weights.

The truth graph is *layerwise* (acorn's "modulewise" truth, by layer): the hits of a particle are ordered by
transverse distance from the beam line (|z| breaks ties), consecutive hits on the same layer form a group
(double hits of overlapping modules), and every hit of a group is joined to every hit of the next group. A
candidate edge is *true* when both ends belong to the same particle and to consecutive groups; an edge between
hits of the same particle that skips a layer is false, as in acorn.

*Target* particles (the ones efficiencies are quoted for) have a mean true pT at their hits above ``pt_min``
and at least ``min_hits`` hits. acorn's weighting: true edges of targets weigh ``target_weight``, true edges
of other particles ``non_target_weight`` (0: neither rewarded nor punished), false edges ``fake_weight``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recoml.errors import ConfigError
from recoml.families.tracking.hits import TrackHits

__all__ = ["EdgeWeighting", "HitTruth", "edge_truth", "hit_truth"]


@dataclass
class HitTruth:
    """Per-hit truth derived once per batch.

    ``group`` numbers the (particle, layer-group) runs of the truth graph globally (consecutive for
    consecutive groups of a particle; -1 for noise); ``particle`` is a dense particle index over the
    batch (-1 for noise); ``target`` marks hits of target particles; ``particle_pt`` is the particle's pT
    at every hit; ``truth_index`` ``(2, T)`` the truth graph, inner hit first, ``truth_target`` ``(T,)``.
    """

    group: torch.Tensor
    particle: torch.Tensor
    particle_pt: torch.Tensor
    particle_nhits: torch.Tensor
    target: torch.Tensor
    truth_index: torch.Tensor
    truth_target: torch.Tensor
    n_particles: int


def hit_truth(hits: TrackHits, pt_min: float = 1.0, min_hits: int = 3) -> HitTruth:
    """Truth graph, particle indices and target flags of every hit (needs ``hits.particle_id``)."""
    if hits.particle_id is None or hits.pt is None:
        raise ConfigError("hit_truth needs hits with truth (hit_particle_id, hit_tpx, hit_tpy)")
    device = hits.pos.device
    n = hits.num_hits
    pid = hits.particle_id
    # Along the outgoing branch of a track from the beam line the transverse radius grows (|z| breaks ties).
    dist = hits.r.double() * 1e4 + hits.z.double().abs()
    # Sort by (event, particle, radius) with stable sorts, last key first.
    order = torch.argsort(dist, stable=True)
    order = order[torch.argsort(pid[order], stable=True)]
    order = order[torch.argsort(hits.batch[order], stable=True)]
    s_pid, s_evt, s_layer = pid[order], hits.batch[order], hits.layer[order]
    real = s_pid != 0
    new_particle = torch.ones(n, dtype=torch.bool, device=device)
    if n > 1:
        new_particle[1:] = (s_pid[1:] != s_pid[:-1]) | (s_evt[1:] != s_evt[:-1])
    new_group = new_particle.clone()
    if n > 1:
        new_group[1:] |= s_layer[1:] != s_layer[:-1]
    particle_sorted = torch.cumsum(new_particle & real, 0) - 1
    group_sorted = torch.cumsum(new_group & real, 0) - 1
    n_particles = int(particle_sorted[-1]) + 1 if n and bool(real.any()) else 0

    particle = torch.full((n,), -1, dtype=torch.int64, device=device)
    group = torch.full((n,), -1, dtype=torch.int64, device=device)
    particle[order[real]] = particle_sorted[real]
    group[order[real]] = group_sorted[real]

    # Particle pT (mean over its hits) and number of hits, back on every hit.
    safe = particle.clamp_min(0)
    nhits = torch.zeros(max(n_particles, 1), device=device, dtype=torch.float32)
    nhits.index_add_(0, safe[particle >= 0], torch.ones(int((particle >= 0).sum()), device=device))
    pt_sum = torch.zeros_like(nhits).index_add_(0, safe[particle >= 0], hits.pt[particle >= 0].float())
    p_pt = pt_sum / nhits.clamp_min(1)
    particle_pt = torch.where(particle >= 0, p_pt[safe], torch.zeros((), device=device))
    particle_nhits = torch.where(particle >= 0, nhits[safe], torch.zeros((), device=device)).long()
    target = (particle >= 0) & (particle_pt > pt_min) & (particle_nhits >= min_hits)

    truth_index = _consecutive_group_pairs(order[real], group_sorted[real], particle_sorted[real])
    truth_target = (
        target[truth_index[0]] if truth_index.shape[1] else torch.zeros(0, dtype=torch.bool, device=device)
    )
    return HitTruth(
        group, particle, particle_pt, particle_nhits, target, truth_index, truth_target, n_particles
    )


def _consecutive_group_pairs(hit: torch.Tensor, group: torch.Tensor, particle: torch.Tensor) -> torch.Tensor:
    """All (hit in group g, hit in group g+1) pairs of the same particle, ``(2, T)`` in hit indices.

    ``hit``/``group``/``particle`` are the real hits in group order (groups contiguous and ascending).
    """
    device = hit.device
    if hit.numel() == 0:
        return torch.zeros(2, 0, dtype=torch.int64, device=device)
    n_groups = int(group[-1]) + 1
    size = torch.bincount(group, minlength=n_groups)
    start = torch.cumsum(size, 0) - size
    g_particle = particle[start]
    has_next = torch.zeros(n_groups, dtype=torch.bool, device=device)
    has_next[:-1] = g_particle[1:] == g_particle[:-1]
    next_size = torch.zeros_like(size)
    next_size[:-1] = size[1:]
    per_hit = torch.where(has_next[group], next_size[group], torch.zeros_like(group))
    src = torch.repeat_interleave(hit, per_hit)
    total = int(per_hit.sum())
    if total == 0:
        return torch.zeros(2, 0, dtype=torch.int64, device=device)
    first = torch.repeat_interleave(torch.cumsum(per_hit, 0) - per_hit, per_hit)
    within = torch.arange(total, device=device) - first
    src_group = torch.repeat_interleave(group, per_hit)
    dst_sorted = start[src_group + 1] + within
    return torch.stack([src, hit[dst_sorted]])


@dataclass
class EdgeWeighting:
    """acorn's truth weighting of edges (see the module docstring)."""

    target_weight: float = 1.0
    non_target_weight: float = 0.0
    fake_weight: float = 1.0

    def __post_init__(self) -> None:
        if min(self.target_weight, self.non_target_weight, self.fake_weight) < 0:
            raise ConfigError("edge weights must be >= 0")


def edge_truth(
    edge_index: torch.Tensor, truth: HitTruth, weighting: EdgeWeighting | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(y, target, weight)`` of candidate edges: true (consecutive groups of one particle), belonging to a
    target particle, and the training weight."""
    weighting = weighting or EdgeWeighting()
    src, dst = edge_index
    gs, gd = truth.group[src], truth.group[dst]
    y = (truth.particle[src] == truth.particle[dst]) & (gs >= 0) & ((gs - gd).abs() == 1)
    target = y & truth.target[src]
    weight = torch.where(
        y,
        torch.where(target, weighting.target_weight, weighting.non_target_weight),
        torch.full_like(y, weighting.fake_weight, dtype=torch.float32),
    ).float()
    return y, target, weight
