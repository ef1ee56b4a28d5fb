"""Edge-level predictions (tracking): scored candidate edges, the hits they join, the particles behind them.

The edge classifier's graph is built on the device per batch, so its edges exist only at prediction time.
To let track building and matching run later from the predictions file alone, one batch becomes three
object types of the event-store layout:

* ``edges`` (``event_edges_index``): ``edge_src``, ``edge_dst`` (event-local hit rows, inner -> outer),
  ``edge_score``, and with truth ``edge_truth`` (true edge of any particle), ``edge_target`` (true edge of a
  target particle) and ``edge_weight`` (the training weight);
* ``hits`` (``event_hits_index``): the store's hit fields track building and matching read
  (:data:`EDGE_HIT_FIELDS` that the batch holds), in store order, so ``edge_src`` indexes them;
* ``particles`` (``event_particles_index``): ``particle_id``, ``particle_pt``, ``particle_eta`` (means over
  the particle's hits of the true momentum, the matching's definition) and ``particle_nhits``;

plus ``true_target_edges`` per event (target edges of the truth graph: the graph-efficiency denominator).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from recoml.contracts.batch import HitBatch

#: Store hit fields copied into an edge predictions file when the batch has them.
EDGE_HIT_FIELDS: tuple[str, ...] = (
    "hit_x",
    "hit_y",
    "hit_z",
    "hit_particle_id",
    "hit_tpx",
    "hit_tpy",
    "hit_tpz",
    "hit_weight",
)
#: Object types of an edge predictions file.
EDGE_OBJECT_TYPES: tuple[str, ...] = ("hits", "edges", "particles")
#: ``pred/<key>`` of :meth:`EdgeClassificationTask.predict` -> edge field in the file.
EDGE_KEYS = {
    "edge_score": "edge_score",
    "edge_y": "edge_truth",
    "edge_target": "edge_target",
    "edge_weight": "edge_weight",
}


def _host(t: torch.Tensor) -> np.ndarray:
    t = t.detach()
    return (t.float() if t.is_floating_point() else t).cpu().numpy()


def _event_offsets(event: np.ndarray, n_events: int) -> np.ndarray:
    """Start of each event's rows in arrays sorted by event."""
    counts = np.bincount(event, minlength=n_events)
    return (np.cumsum(counts) - counts).astype(np.int64)


def particles_from_hits(
    event: np.ndarray, particle_id: np.ndarray, pt: np.ndarray, eta: np.ndarray, n_events: int
) -> dict[str, np.ndarray]:
    """One row per (event, particle) of the hits (noise, id 0, excluded), sorted by event then id."""
    real = particle_id != 0
    keys = np.stack([event[real], particle_id[real]], 1)
    if len(keys):
        uniq, inv, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
        inv = inv.reshape(-1)
    else:
        uniq, inv, counts = np.zeros((0, 2), np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
    mean = lambda v: np.bincount(inv, weights=v[real], minlength=len(uniq)) / np.maximum(counts, 1)  # noqa: E731
    return {
        "event_particles_index": _event_offsets(uniq[:, 0].astype(np.int64), n_events),
        "particle_id": uniq[:, 1].astype(np.int64),
        "particle_pt": mean(pt).astype(np.float32),
        "particle_eta": mean(eta).astype(np.float32),
        "particle_nhits": counts.astype(np.int32),
    }


def hit_pt_eta(hits: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """True pT (GeV) and eta at each hit from ``hit_tpx/tpy/tpz`` (0 for noise hits)."""
    pt = np.hypot(hits["hit_tpx"].astype(np.float64), hits["hit_tpy"].astype(np.float64))
    pt = np.where(hits["hit_particle_id"] != 0, pt, 0.0)
    eta = np.arcsinh(hits["hit_tpz"].astype(np.float64) / np.maximum(pt, 1e-9))
    return pt, np.where(pt > 0, eta, 0.0)


def edge_chunk(prediction: Mapping[str, torch.Tensor], batch: HitBatch) -> dict[str, np.ndarray]:
    """A batch of edge-classifier predictions as store arrays (edges, hits, particles; see the module)."""
    offsets = _host(prediction["offsets"]).astype(np.int64)
    n_events = len(offsets) - 1
    counts = np.diff(offsets)
    hit_event = np.repeat(np.arange(n_events), counts)
    index = _host(prediction["pred/edge_index"]).astype(np.int64).reshape(2, -1)
    edge_event = hit_event[index[0]] if index.shape[1] else np.zeros(0, np.int64)
    order = np.argsort(edge_event, kind="stable")
    edge_event = edge_event[order]
    chunk: dict[str, np.ndarray] = {
        "event_index": _host(prediction["event_index"]).astype(np.int64),
        "event_edges_index": _event_offsets(edge_event, n_events),
        "edge_src": (index[0, order] - offsets[edge_event]).astype(np.int32),
        "edge_dst": (index[1, order] - offsets[edge_event]).astype(np.int32),
    }
    for key, name in EDGE_KEYS.items():
        if f"pred/{key}" in prediction:
            value = _host(prediction[f"pred/{key}"])[order]
            chunk[name] = value.astype(np.float32) if name in ("edge_score", "edge_weight") else value
    if "pred/event_truth_target_edges" in prediction:
        chunk["true_target_edges"] = _host(prediction["pred/event_truth_target_edges"]).astype(np.int64)
    hits = {f"hit_{k}": _host(v) for k, v in batch.hits.items() if f"hit_{k}" in EDGE_HIT_FIELDS}
    chunk |= hits
    chunk["event_hits_index"] = offsets[:-1]
    if {"hit_particle_id", "hit_tpx", "hit_tpy", "hit_tpz"} <= set(hits):
        pt, eta = hit_pt_eta(hits)
        chunk |= particles_from_hits(hit_event, hits["hit_particle_id"].astype(np.int64), pt, eta, n_events)
    return chunk
