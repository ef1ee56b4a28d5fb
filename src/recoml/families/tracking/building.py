"""Track building: from scored edges to a track label per hit (-1: in no track).

* :func:`connected_components`: labels of the connected components of a graph, with scipy (CPU) or with
  label propagation and pointer jumping in torch (any device).
* :func:`build_tracks_cc`: keep edges scoring above a cut, take the components with at least ``min_hits``
  hits as tracks (acorn's ``ConnectedComponents``).
* :func:`build_tracks_walkthrough`: acorn's "CC and walk". Components of the high-score graph that are
  simple chains (no hit with two kept incoming or outgoing edges) are tracks as they are; the remaining hits
  are walked: from each hit without an incoming edge, follow the best-scoring outgoing
  edge above ``walk_min`` to a free hit, and keep the path when it has ``min_hits`` hits (seeds with the most
  confident first edge go first). Branchings from
  overlapping tracks are resolved by the scores instead of merging both tracks into one component.

Edges never join events, so a batch of events is processed at once; labels are unique over the batch.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import connected_components as _scipy_cc

from recoml.errors import ConfigError

__all__ = ["build_tracks_cc", "build_tracks_walkthrough", "connected_components", "relabel"]


def connected_components(edge_index: torch.Tensor, n_nodes: int, backend: str = "scipy") -> torch.Tensor:
    """Component label ``0..C-1`` of every node, ``(N,)``; edges undirected, a lone node is a component."""
    if backend == "scipy":
        ei = edge_index.detach().cpu().numpy()
        adj = sp.coo_matrix((np.ones(ei.shape[1], dtype=np.int8), (ei[0], ei[1])), shape=(n_nodes, n_nodes))
        _, labels = _scipy_cc(adj, directed=False)
        return torch.as_tensor(labels, dtype=torch.int64, device=edge_index.device)
    if backend == "torch":
        return _torch_cc(edge_index, n_nodes)
    raise ConfigError(f"connected_components: backend must be 'scipy' or 'torch', got '{backend}'")


def _torch_cc(edge_index: torch.Tensor, n_nodes: int) -> torch.Tensor:
    """Min-label propagation with pointer jumping: O(log diameter) rounds of vectorized ops on any device."""
    device = edge_index.device
    labels = torch.arange(n_nodes, device=device)
    if edge_index.shape[1] == 0:
        return labels
    src, dst = edge_index[0], edge_index[1]
    while True:
        low = torch.minimum(labels[src], labels[dst])
        new = labels.scatter_reduce(0, src, low, reduce="amin").scatter_reduce(0, dst, low, reduce="amin")
        # Hook roots onto smaller labels, then jump pointers until every node points at a root.
        new = new.scatter_reduce(0, labels, new, reduce="amin")
        while True:
            jumped = new[new]
            if torch.equal(jumped, new):
                break
            new = jumped
        if torch.equal(new, labels):
            break
        labels = new
    return relabel(labels)


def relabel(labels: torch.Tensor, min_size: int = 1) -> torch.Tensor:
    """Dense labels 0..K-1 (ordered by the original label); groups smaller than ``min_size`` and
    negative labels become -1."""
    out = torch.full_like(labels, -1)
    valid = labels >= 0
    if not bool(valid.any()):
        return out
    uniq, inverse, counts = torch.unique(labels[valid], return_inverse=True, return_counts=True)
    keep = counts >= min_size
    dense = torch.full_like(uniq, -1)
    dense[keep] = torch.arange(int(keep.sum()), device=labels.device)
    out[valid] = dense[inverse]
    return out


def build_tracks_cc(
    edge_index: torch.Tensor,
    scores: torch.Tensor,
    n_nodes: int,
    score_cut: float = 0.5,
    min_hits: int = 3,
    backend: str = "scipy",
) -> torch.Tensor:
    """Track label per hit: components of the edges above ``score_cut`` with ``min_hits`` hits or more."""
    kept = edge_index[:, scores > score_cut]
    return relabel(connected_components(kept, n_nodes, backend), min_size=min_hits)


def build_tracks_walkthrough(
    edge_index: torch.Tensor,
    scores: torch.Tensor,
    n_nodes: int,
    score_cut: float = 0.5,
    walk_min: float | None = None,
    min_hits: int = 3,
    walk_add: float | None = None,
) -> torch.Tensor:
    """Track label per hit by CC-and-walk (see the module docstring). Edges point from inner to outer hit.

    ``walk_min`` (default: ``score_cut``) is the lowest score a walk follows; below ``score_cut`` the walk
    may also pick up hits the cut left alone. ``walk_add`` (acorn's ``th_add``; default off): the other free
    hits a step could go to with a score above it join the track too (double hits of overlapping modules),
    the walk going on from the best one.
    """
    walk_min = score_cut if walk_min is None else float(walk_min)
    device = edge_index.device
    ei = edge_index.detach().cpu().numpy()
    sc = scores.detach().float().cpu().numpy()
    labels = np.full(n_nodes, -1, dtype=np.int64)
    # 1. Simple chains of the high-score graph are tracks as they are.
    high = sc > score_cut
    hs, hd = ei[0, high], ei[1, high]
    comp = connected_components(torch.as_tensor(np.stack([hs, hd])), n_nodes).numpy()
    out_deg = np.bincount(hs, minlength=n_nodes)
    in_deg = np.bincount(hd, minlength=n_nodes)
    branching = np.zeros(comp.max() + 1 if n_nodes else 0, dtype=bool)
    np.logical_or.at(branching, comp, (out_deg > 1) | (in_deg > 1))
    size = np.bincount(comp, minlength=len(branching))
    simple = ~branching[comp] & (size[comp] >= min_hits)
    next_label = 0
    if simple.any():
        _, dense = np.unique(comp[simple], return_inverse=True)
        labels[simple] = dense
        next_label = int(dense.max()) + 1
    # 2. Walk the rest along the best edges above walk_min.
    free = labels < 0
    keep = (sc > walk_min) & free[ei[0]] & free[ei[1]]
    ws, wd, wsc = ei[0, keep], ei[1, keep], sc[keep]
    if len(ws):
        order = np.lexsort((-wsc, ws))  # by source, best score first
        ws, wd, wsc = ws[order], wd[order], wsc[order]
        starts = np.searchsorted(ws, np.arange(n_nodes + 1))
        has_in = np.zeros(n_nodes, dtype=bool)
        has_in[wd] = True
        seeds = np.unique(ws[~has_in[ws]])
        # Seeds with the most confident first edge first.
        best = np.full(n_nodes, -1.0)
        np.maximum.at(best, ws, wsc)
        seeds = seeds[np.argsort(-best[seeds], kind="stable")]
        used = ~free
        for seed in seeds.tolist():
            if used[seed]:
                continue
            path = [seed]
            node = seed
            while True:
                free_next = [
                    j for j in range(starts[node], starts[node + 1]) if not used[wd[j]] and wd[j] not in path
                ]
                if not free_next:
                    break
                nxt = int(wd[free_next[0]])  # edges of a node are sorted best first
                if walk_add is not None:
                    path.extend(int(wd[j]) for j in free_next[1:] if wsc[j] > walk_add)
                path.append(nxt)
                node = nxt
            if len(path) >= min_hits:
                labels[path] = next_label
                used[path] = True
                next_label += 1
    return torch.as_tensor(labels, dtype=torch.int64, device=device)
