"""Graph construction: candidate edges between hits that could be consecutive on one track.

:class:`GeometricConstructor` is the classic heptrkx / Exa.TrkX builder: edges only between hits on
*connected layer pairs*, and only when the pair is compatible with a track from the luminous region above a
pT threshold:

* azimuth: a track of transverse radius ``R`` from the beam line has ``phi(r) = phi0 -+ asin(r / 2R)``, so
  ``|dphi| <= |asin(r_out k) - asin(r_in k)| + dphi_tolerance`` with ``k = 1 / (2 R(pt_min))`` (the exact
  form of the "phi slope" cut ``dphi / dr <= k``);
* longitudinal: the straight line through both hits in (r, z) meets the beam line at ``|z0| <= z0_max``;
* direction: the outer hit is further from the beam (``r_out > r_in``).

Layer pairs come from the geometry (tracing helices and straight lines from the luminous region through
the detector: every pair of layers crossed one after the other) and optionally from the truth of training
events (:meth:`GeometricConstructor.fit`). Candidates are found without any per-event loop: hits are sorted
by (layer, event, phi) once, and one ``searchsorted`` per (inner hit, layer pair) gives the phi window.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from recoml.errors import ConfigError
from recoml.families.tracking.detector import TrackerDetector
from recoml.families.tracking.hits import TrackerGeometry, TrackHits
from recoml.families.tracking.simulation import propagate

__all__ = ["GeometricConstructor", "layer_pairs_from_geometry", "orient_edges"]

log = logging.getLogger(__name__)

#: Spacing of events in the sort key (> 2 pi + twice any phi window).
_EVENT_STRIDE = 16.0


_TRACED: dict[tuple, np.ndarray] = {}


def _traced_pairs(detector: TrackerDetector, **options: float) -> np.ndarray:
    """:func:`layer_pairs_from_geometry`, memoized per detector layout and options (tracing takes ~1 s and
    every model built from a config traces again)."""
    layout = np.concatenate(
        [
            detector.layer_radius,
            detector.layer_half_length,
            detector.layer_z,
            detector.layer_r_min,
            detector.layer_r_max,
            [detector.bfield],
        ]
    )
    key = (layout.tobytes(), tuple(sorted(options.items())))
    if key not in _TRACED:
        _TRACED[key] = layer_pairs_from_geometry(detector, **options)  # type: ignore[arg-type]
    return _TRACED[key].copy()


def layer_pairs_from_geometry(
    detector: TrackerDetector,
    pt_min: float = 0.5,
    z0_max: float = 200.0,
    eta_max: float = 4.5,
    n_tracks: int = 40000,
    seed: int = 0,
) -> np.ndarray:
    """``(P, 2)`` global layer pairs (inner, outer) crossed one after the other by a track from the beam spot.

    Tracks: straight lines and helices of ``pt_min`` of both charges, vertex z uniform in ``+-z0_max``,
    pseudorapidity uniform in ``+-eta_max``. Consecutive crossings of the outgoing branch give the pairs.
    """

    rng = np.random.default_rng(seed)
    n = int(n_tracks)
    vertex = np.zeros((n, 3))
    vertex[:, 2] = rng.uniform(-z0_max, z0_max, n)
    eta = rng.uniform(-eta_max, eta_max, n)
    pt = np.where(np.arange(n) % 3 == 0, 1e4, pt_min)
    charge = np.where(np.arange(n) % 2 == 0, 1, -1)
    hits = propagate(detector, vertex, pt, eta, np.zeros(n), charge)
    same = hits.particle[1:] == hits.particle[:-1]
    pairs = np.stack([hits.layer[:-1][same], hits.layer[1:][same]], axis=1)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    return np.unique(pairs, axis=0)


def orient_edges(edge_index: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """Edges pointing outwards (source nearer the origin), each unordered pair once, self-loops dropped."""
    if edge_index.shape[1] == 0:
        return edge_index
    d = pos.double().square().sum(1)
    src, dst = edge_index
    swap = (d[src] > d[dst]) | ((d[src] == d[dst]) & (src > dst))
    src, dst = torch.where(swap, dst, src), torch.where(swap, src, dst)
    keep = src != dst
    # One int64 key per edge: a 1-d unique (a sort) instead of torch.unique(dim=1), ~30x faster.
    n = int(pos.shape[0])
    key = torch.unique(src[keep] * n + dst[keep])
    return torch.stack([key // n, key % n])


class GeometricConstructor(nn.Module):
    """Layer-pair builder with azimuth (curvature) and longitudinal (z0) cuts; see the module docstring.

    ``pt_min`` (GeV) sets the curvature of the azimuth cut, ``dphi_tolerance`` (rad) absorbs resolution and
    vertex spread. The longitudinal cut is the z0 cut written on the outer hit: its z (barrel) or r (disk)
    must lie where a track from ``|z0| <= z0_max`` through the inner hit lands, for any curvature from a
    straight line to ``pt_min``, widened by ``long_tolerance`` mm plus ``n_sigma`` layer resolutions.
    ``pairs``: ``geometry`` (traced), ``learned`` (from training truth through :meth:`fit`), or ``both``;
    the learned pairs are a buffer saved with the model. ``n_bins`` longitudinal bins per layer bound the
    candidates the exact cuts look at.
    """

    #: Buffers (registered in __init__).
    traced_pairs: torch.Tensor
    learned_pairs: torch.Tensor
    layer_is_disk: torch.Tensor
    layer_radius: torch.Tensor
    layer_z: torch.Tensor
    layer_u_min: torch.Tensor
    layer_u_max: torch.Tensor
    layer_sigma_long: torch.Tensor

    def __init__(
        self,
        detector: TrackerDetector,
        pt_min: float = 0.9,
        dphi_tolerance: float = 0.003,
        z0_max: float = 250.0,
        long_tolerance: float = 10.0,
        n_sigma: float = 3.0,
        pairs: str = "geometry",
        n_bins: int = 32,
        trace_pt_min: float | None = None,
        trace_eta_max: float = 4.5,
    ) -> None:
        super().__init__()
        if pairs not in ("geometry", "learned", "both"):
            raise ConfigError(f"GeometricConstructor: pairs must be geometry, learned or both, got '{pairs}'")
        if not pt_min > 0 or z0_max <= 0 or dphi_tolerance < 0 or long_tolerance < 0 or n_bins < 1:
            raise ConfigError(
                "GeometricConstructor: pt_min, z0_max and n_bins must be > 0; dphi_tolerance and "
                "long_tolerance >= 0"
            )
        self.geometry = TrackerGeometry(detector)
        self.pt_min = float(pt_min)
        self.dphi_tolerance = float(dphi_tolerance)
        self.z0_max = float(z0_max)
        self.long_tolerance = float(long_tolerance)
        self.n_sigma = float(n_sigma)
        self.n_bins = int(n_bins)
        self.pairs_source = pairs
        self.radius_min = float(detector.radius_of_curvature(self.pt_min))  # mm
        self.curvature = 1.0 / (2 * self.radius_min)  # 1 / (2 R), 1/mm
        traced = np.zeros((0, 2), dtype=np.int64)
        if pairs in ("geometry", "both"):
            traced = _traced_pairs(
                detector, pt_min=trace_pt_min or 0.5 * self.pt_min, z0_max=self.z0_max, eta_max=trace_eta_max
            )
        self.register_buffer("traced_pairs", torch.as_tensor(traced, dtype=torch.int64), persistent=False)
        self.register_buffer("learned_pairs", torch.zeros(0, 2, dtype=torch.int64))
        disk = torch.as_tensor(detector.is_disk)
        tables = {
            "is_disk": disk,
            "radius": torch.as_tensor(detector.layer_radius),
            "z": torch.as_tensor(detector.layer_z),
            "u_min": torch.where(
                disk, torch.as_tensor(detector.layer_r_min), torch.as_tensor(detector.layer_z_min)
            ),
            "u_max": torch.where(
                disk, torch.as_tensor(detector.layer_r_max), torch.as_tensor(detector.layer_z_max)
            ),
            "sigma_long": torch.as_tensor(detector.resolution[:, 1]),
        }
        for name, value in tables.items():
            self.register_buffer(
                f"layer_{name}", value.double() if value.is_floating_point() else value, persistent=False
            )

    @property
    def layer_pairs(self) -> torch.Tensor:
        """The pairs in use, ``(P, 2)`` (inner, outer)."""
        if self.pairs_source == "geometry":
            return self.traced_pairs
        if self.pairs_source == "learned":
            return self.learned_pairs
        return torch.unique(torch.cat([self.traced_pairs, self.learned_pairs]), dim=0)

    def fit(self, truth_layer_pairs: Iterable[torch.Tensor]) -> None:
        """Learn layer pairs from ``(T, 2)`` (inner, outer) layers of true edges of training events."""
        if self.pairs_source == "geometry":
            return
        found = [p.to(self.learned_pairs.device).long() for p in truth_layer_pairs if p.numel()]
        if not found:
            raise ConfigError(
                "GeometricConstructor.fit: the training events hold no true edge to learn pairs from"
            )
        pairs = torch.unique(torch.cat(found), dim=0)
        self.learned_pairs = pairs[pairs[:, 0] != pairs[:, 1]]
        log.info("learned %d layer pairs from training truth", len(self.learned_pairs))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: ANN001
        # The learned pairs have a data-dependent length: take the saved size.
        key = prefix + "learned_pairs"
        if key in state_dict:
            self.learned_pairs = torch.empty_like(state_dict[key], device=self.learned_pairs.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # -- geometry of the cuts ---------------------------------------------------------------------------
    def _arc(self, r: torch.Tensor) -> torch.Tensor:
        """Transverse path length from the beam line to radius ``r`` on the ``pt_min`` circle."""
        two_r = 2 * self.radius_min
        return two_r * torch.asin((r / two_r).clamp(max=1.0))

    def _long_window(
        self, r0: torch.Tensor, z0_hit: torch.Tensor, inner: torch.Tensor, outer: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Range of the outer hit's longitudinal coordinate (z on a barrel, r on a disk) per query."""
        zmax = self.z0_max
        disk = self.layer_is_disk[outer]
        tol = self.long_tolerance + self.n_sigma * (
            self.layer_sigma_long[outer] + 2 * self.layer_sigma_long[inner]
        )
        # Barrel at radius R1: z = z0 + (z_in - z0) * rho, rho from R1/r0 (straight) to s(R1)/s(r0) (pt_min).
        big = torch.full_like(r0, 1e12)
        r1 = self.layer_radius[outer]
        reach = r1 > r0
        rho_lo = r1 / r0.clamp_min(1e-6)
        rho_hi = self._arc(r1) / self._arc(r0).clamp_min(1e-6)
        corners = torch.stack(
            [zv + (z0_hit - zv) * rho for zv in (-zmax, zmax) for rho in (rho_lo, rho_hi)], dim=0
        )
        z_lo = torch.where(reach, corners.min(0).values - tol, big)
        z_hi = torch.where(reach, corners.max(0).values + tol, -big)
        # Disk at z_d: s(r_out) = lambda s(r0), lambda = (z_d - z0) / (z_in - z0) monotone in z0.
        zd = self.layer_z[outer]
        lam = []
        for zv in (-zmax, zmax):
            den = z0_hit - zv
            val = (zd - zv) / torch.where(den == 0, torch.full_like(den, 1e-12), den)
            lam.append(torch.where(val >= 1, val, torch.full_like(val, float("nan"))))
        # Inner hit within +-z0_max: z0 -> z_in makes lambda unbounded on the valid side.
        pole = z0_hit.abs() < zmax
        lam_lo = torch.fmin(lam[0], lam[1])
        lam_hi = torch.where(pole, torch.full_like(r0, float("inf")), torch.fmax(lam[0], lam[1]))
        two_r = 2 * self.radius_min
        r_lo = two_r * torch.sin((lam_lo * self._arc(r0) / two_r).clamp(max=0.5 * math.pi))
        r_hi = lam_hi * r0
        ok = torch.isfinite(r_lo)
        r_lo = torch.where(ok, r_lo - tol, big)
        r_hi = torch.where(ok, torch.nan_to_num(r_hi, nan=-1e12, posinf=1e12) + tol, -big)
        lo = torch.where(disk, r_lo, z_lo)
        hi = torch.where(disk, r_hi, z_hi)
        return torch.maximum(lo, self.layer_u_min[outer] - tol), torch.minimum(
            hi, self.layer_u_max[outer] + tol
        )

    def _bin(self, u: torch.Tensor, layer: torch.Tensor) -> torch.Tensor:
        lo, hi = self.layer_u_min[layer], self.layer_u_max[layer]
        b = torch.floor((u - lo) / (hi - lo).clamp_min(1e-9) * self.n_bins)
        return b.clamp(0, self.n_bins - 1).long()

    def forward(self, hits: TrackHits) -> torch.Tensor:
        """Candidate edges ``(2, E)`` (inner hit, outer hit) of every event of ``hits``."""
        device = hits.pos.device
        empty = torch.zeros(2, 0, dtype=torch.int64, device=device)
        pairs = self.layer_pairs.to(device)
        if hits.num_hits == 0 or pairs.shape[0] == 0:
            return empty
        r, phi, z = hits.r.double(), hits.phi.double(), hits.z.double()
        layer, n_events, nb = hits.layer, hits.num_events, self.n_bins
        u = torch.where(self.layer_is_disk[layer], r, z)
        # One sort: layer, event, longitudinal bin, phi.
        cell = (layer * n_events + hits.batch) * nb + self._bin(u, layer)
        order = torch.argsort(cell.double() * _EVENT_STRIDE + (phi + math.pi))
        skey = (cell.double() * _EVENT_STRIDE + (phi + math.pi))[order]

        # Every (inner hit, layer pair) query.
        layer_count = torch.bincount(layer, minlength=self.geometry.n_layers)
        layer_start = torch.cumsum(layer_count, 0) - layer_count
        n_inner = layer_count[pairs[:, 0]]
        n_q = int(n_inner.sum())
        if n_q == 0:
            return empty
        q_pair = torch.repeat_interleave(
            torch.arange(pairs.shape[0], device=device), n_inner, output_size=n_q
        )
        first = torch.repeat_interleave(torch.cumsum(n_inner, 0) - n_inner, n_inner, output_size=n_q)
        q_hit = order[layer_start[pairs[q_pair, 0]] + torch.arange(n_q, device=device) - first]
        inner, outer = pairs[q_pair, 0], pairs[q_pair, 1]
        lo_u, hi_u = self._long_window(r[q_hit], z[q_hit], inner, outer)
        r_out_hi = torch.where(self.layer_is_disk[outer], hi_u, self.layer_radius[outer])
        k = self.curvature
        width = (_asin_clamped(r_out_hi * k) - _asin_clamped(r[q_hit] * k)).abs() + self.dphi_tolerance
        b_lo, b_hi = self._bin(lo_u, outer), self._bin(hi_u, outer)
        n_b = torch.where(hi_u >= lo_u, b_hi - b_lo + 1, torch.zeros_like(b_lo))
        # Expand to (query, bin) rows, then phi windows (and their images across +-pi).
        qb = torch.repeat_interleave(torch.arange(n_q, device=device), n_b)
        if qb.numel() == 0:
            return empty
        within = torch.arange(qb.numel(), device=device) - torch.repeat_interleave(
            torch.cumsum(n_b, 0) - n_b, n_b
        )
        bin_ = b_lo[qb] + within
        base = ((outer[qb] * n_events + hits.batch[q_hit[qb]]) * nb + bin_).double() * _EVENT_STRIDE + math.pi
        centre, w = phi[q_hit[qb]], width[qb]
        rows, los, his = [], [], []
        for shift in (0.0, 2 * math.pi, -2 * math.pi):
            c = centre + shift
            sel = (c - w <= math.pi) & (c + w >= -math.pi)
            if shift != 0.0:
                sel = torch.nonzero(sel).flatten()
                if sel.numel() == 0:
                    continue
            else:
                sel = torch.arange(qb.numel(), device=device)
            b0 = base[sel]
            los.append(torch.searchsorted(skey, b0 + (c[sel] - w[sel]).clamp(-math.pi, math.pi)))
            his.append(torch.searchsorted(skey, b0 + (c[sel] + w[sel]).clamp(-math.pi, math.pi), right=True))
            rows.append(sel)
        row, lo, hi = torch.cat(rows), torch.cat(los), torch.cat(his)
        count = (hi - lo).clamp_min(0)
        total = int(count.sum())
        if total == 0:
            return empty
        cand_row = torch.repeat_interleave(row, count, output_size=total)
        offset = torch.arange(total, device=device) - torch.repeat_interleave(
            torch.cumsum(count, 0) - count, count, output_size=total
        )
        dst = order[torch.repeat_interleave(lo, count, output_size=total) + offset]
        q = qb[cand_row]
        src = q_hit[q]
        keep = self._passes(src, dst, r, phi, u, lo_u[q], hi_u[q])
        return torch.stack([src[keep], dst[keep]])

    def _passes(self, src, dst, r, phi, u, lo_u, hi_u) -> torch.Tensor:  # noqa: ANN001
        r0, r1 = r[src], r[dst]
        dphi = torch.remainder(phi[dst] - phi[src] + math.pi, 2 * math.pi) - math.pi
        k = self.curvature
        allowed = (_asin_clamped(r1 * k) - _asin_clamped(r0 * k)).abs() + self.dphi_tolerance
        u1 = u[dst]
        return (r1 > r0) & (dphi.abs() <= allowed) & (u1 >= lo_u) & (u1 <= hi_u)

    def extra_repr(self) -> str:
        return (
            f"pt_min={self.pt_min}, dphi_tolerance={self.dphi_tolerance}, z0_max={self.z0_max}, "
            f"long_tolerance={self.long_tolerance}, n_sigma={self.n_sigma}, n_bins={self.n_bins}, "
            f"pairs={self.pairs_source} ({self.layer_pairs.shape[0]})"
        )


def _asin_clamped(x: torch.Tensor) -> torch.Tensor:
    return torch.asin(x.clamp(-1.0, 1.0))


def truth_layer_pairs(hits_layer: torch.Tensor, truth_index: torch.Tensor) -> torch.Tensor:
    """``(T, 2)`` (inner, outer) layers of truth-graph edges, for :meth:`GeometricConstructor.fit`."""
    return torch.stack([hits_layer[truth_index[0]], hits_layer[truth_index[1]]], dim=1)
