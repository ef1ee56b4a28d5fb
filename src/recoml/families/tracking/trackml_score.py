"""The TrackML challenge score (Amrouche et al. 2019, arXiv:1904.06778, section 4; trackml-library
``score.py`` and ``weights.py``).

Every hit carries a weight (noise 0; normalised to 1 per event). A reconstructed track is assigned its
*majority particle* (most shared hits; ties go to the smaller particle id, noise being id 0). The track is
*good* when more than half of its hits belong to that particle and more than half of the particle's hits are
in the track; the event score is the summed weight of the shared hits of the good tracks over the event's
total weight. The reported score is the mean of the event scores (the challenge leaderboard). A hit in no
track counts as a track of its own, as in a complete TrackML submission.

Hit weights, when the data has none (toy events): the product of an order weight (hits ordered by distance
from the particle's origin; a track of 4 to 20 hits gets TrackML's interpolated proposal
``10, 8, 6, 5, 3, 3, 3, 5, 6`` normalised to 1, a particle with fewer than 4 hits weighs 0, hits beyond the
20th weigh 0) and a pT weight (0.2 below 0.5 GeV rising linearly to 1 at 3 GeV).
"""

from __future__ import annotations

import numpy as np

from recoml.errors import ConfigError

__all__ = ["trackml_hit_weights", "trackml_score", "weight_order", "weight_pt"]

ORDER_PROPOSAL = (10.0, 8.0, 6.0, 5.0, 3.0, 3.0, 3.0, 5.0, 6.0)
ORDER_MIN_HITS, ORDER_MAX_HITS = 4, 20


def weight_order(nhits: int) -> np.ndarray:
    """Order weights of the hits of a particle with ``nhits`` hits (TrackML's proposal, summing to 1)."""
    if nhits < ORDER_MIN_HITS:
        return np.zeros(nhits)
    n = min(nhits, ORDER_MAX_HITS)
    supports = np.arange(len(ORDER_PROPOSAL)) * (n - 1) / (len(ORDER_PROPOSAL) - 1)
    w = np.interp(np.arange(n), supports, ORDER_PROPOSAL)
    return np.concatenate([w / w.sum(), np.zeros(nhits - n)])


def weight_pt(pt: np.ndarray) -> np.ndarray:
    """TrackML's pT weight: 0.2 up to 0.5 GeV, linear to 1 at 3 GeV, 1 above (0 below 50 MeV)."""
    return np.interp(np.asarray(pt, float), [0.05, 0.5, 3.0], [0.2, 0.2, 1.0], left=0.0, right=1.0)


def trackml_hit_weights(
    event: np.ndarray, particle_id: np.ndarray, particle_pt: np.ndarray, distance: np.ndarray
) -> np.ndarray:
    """Per-hit TrackML weights, normalised to 1 per event; ``distance`` orders a particle's hits (TrackML:
    ``|z - vz|``), ``particle_pt`` is the particle's pT at every hit."""
    event = np.asarray(event, np.int64)
    pid = np.asarray(particle_id, np.int64)
    real = np.flatnonzero(pid != 0)
    weights = np.zeros(len(pid))
    order = real[np.lexsort((np.asarray(distance, float)[real], pid[real], event[real]))]
    if len(order):
        new = np.ones(len(order), dtype=bool)
        new[1:] = (pid[order][1:] != pid[order][:-1]) | (event[order][1:] != event[order][:-1])
        starts = np.flatnonzero(new)
        for start, stop in zip(starts, np.append(starts[1:], len(order))):
            weights[order[start:stop]] = weight_order(stop - start)
    weights *= weight_pt(particle_pt)
    totals = np.bincount(event, weights=weights)
    return np.divide(weights, totals[event], out=np.zeros_like(weights), where=totals[event] > 0)


def trackml_score(
    event: np.ndarray, particle_id: np.ndarray, track: np.ndarray, weight: np.ndarray
) -> dict[str, float | list[float]]:
    """``score`` (mean over events) and ``event_scores`` of per-hit track labels (-1: in no track)."""
    event = np.asarray(event, np.int64)
    pid = np.asarray(particle_id, np.int64)
    weight = np.asarray(weight, float)
    n = len(event)
    if not (len(pid) == len(track) == len(weight) == n):
        raise ConfigError("trackml_score: every per-hit array must have the same length")
    if n == 0:
        return {"score": 0.0, "event_scores": []}
    # A hit in no track is a track of its own (a distinct negative label).
    track = np.where(np.asarray(track) >= 0, np.asarray(track, np.int64), -1 - np.arange(n))
    events, event_row = np.unique(event, return_inverse=True)
    # Hits per (event, particle), noise included as particle 0.
    _, p_inv, p_count = np.unique(np.stack([event, pid], 1), axis=0, return_inverse=True, return_counts=True)
    p_nhits = p_count[p_inv.reshape(-1)]
    # (event, track, particle) groups: shared hits and their weight.
    keys, inv, shared = np.unique(
        np.stack([event, track, pid], 1), axis=0, return_inverse=True, return_counts=True
    )
    inv = inv.reshape(-1)
    shared_weight = np.bincount(inv, weights=weight, minlength=len(keys))
    particle_nhits = np.zeros(len(keys), np.int64)
    particle_nhits[inv] = p_nhits
    t_keys, t_inv = np.unique(keys[:, :2], axis=0, return_inverse=True)
    t_inv = t_inv.reshape(-1)
    t_nhits = np.bincount(t_inv, weights=shared, minlength=len(t_keys))
    # Majority per track: most shared hits, ties to the smaller particle id (trackml-library's order).
    order = np.lexsort((keys[:, 2], -shared, t_inv))
    first = np.ones(len(order), dtype=bool)
    first[1:] = t_inv[order][1:] != t_inv[order][:-1]
    best = order[first]
    good = (2 * shared[best] > t_nhits[t_inv[best]]) & (2 * shared[best] > particle_nhits[best])
    total = np.bincount(event_row, weights=weight, minlength=len(events))
    good_event = np.searchsorted(events, keys[best, 0])
    gained = np.bincount(good_event[good], weights=shared_weight[best][good], minlength=len(events))
    scores = np.divide(gained.astype(float), total, out=np.zeros(len(events)), where=total > 0)
    return {"score": float(scores.mean()), "event_scores": scores.tolist()}
