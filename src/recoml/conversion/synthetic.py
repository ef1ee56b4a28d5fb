"""Write synthetic flat WCSim-style ROOT files with uproot (for tests, the benchmark and the docs example).

The layout is the one ``recoml/conf/convert/flat_wcsim.yaml`` and ``flat_wcsim_tubes.yaml`` read: tree
``events``, one entry per event, jagged per-hit branches and per-event truth. Written chunk by chunk
(``extend``), so a million-event file needs only one chunk in memory.
"""

from __future__ import annotations

import os
from pathlib import Path

import awkward as ak
import numpy as np
import uproot

from recoml.io.atomic import atomic_output

__all__ = ["write_flat_wcsim"]


def write_flat_wcsim(
    path: str | os.PathLike,
    n_events: int,
    *,
    mean_hits: float = 300.0,
    pmt_positions: np.ndarray | None = None,
    n_pmts: int = 2014,
    position_jitter: float = 0.0,
    seed: int = 0,
    chunk_size: int = 20_000,
    tree: str = "events",
    compression: object = "default",
    pdg_codes: tuple[int, ...] = (11, 13, 22),
) -> Path:
    """A flat WCSim-style file of ``n_events`` events with Poisson(``mean_hits``) hits each.

    Per hit: ``tube`` (1-based PMT id, int32), ``charge``, ``time`` (float32) and, when ``pmt_positions``
    (P, 3) cm is given, ``hitx/hity/hitz``: the tube's position plus a uniform jitter of
    ``position_jitter`` cm per axis. Per event: ``energy`` (MeV), ``vtx_x/y/z`` (cm), ``dir_x/y/z``
    (unit) and ``pid`` (a PDG code drawn from ``pdg_codes``: e-, mu-, gamma by default).
    ``compression`` "default" keeps uproot's (ZLIB level 1), None writes uncompressed baskets.
    """
    path = Path(path)
    rng = np.random.default_rng(seed)
    if pmt_positions is not None:
        pmt_positions = np.asarray(pmt_positions, dtype=np.float64)
        n_pmts = len(pmt_positions)
    kwargs = {} if compression == "default" else {"compression": compression}
    with atomic_output(path) as tmp, uproot.recreate(tmp, **kwargs) as f:
        for start in range(0, max(n_events, 1), chunk_size):
            n = min(chunk_size, n_events - start)
            if n <= 0:
                break
            counts = rng.poisson(mean_hits, n).astype(np.int64)
            total = int(counts.sum())
            tube = rng.integers(0, n_pmts, total).astype(np.int32)
            hits: dict[str, np.ndarray] = {
                "tube": tube + 1,
                "charge": rng.exponential(1.0, total).astype(np.float32),
                "time": rng.normal(1000.0, 5.0, total).astype(np.float32),
            }
            if pmt_positions is not None:
                xyz = pmt_positions[tube] + rng.uniform(-position_jitter, position_jitter, (total, 3))
                hits.update({k: xyz[:, i].astype(np.float32) for i, k in enumerate(("hitx", "hity", "hitz"))})
            direction = rng.normal(size=(n, 3))
            direction /= np.linalg.norm(direction, axis=1, keepdims=True)
            branches: dict[str, ak.Array | np.ndarray] = {k: ak.unflatten(v, counts) for k, v in hits.items()}
            branches.update(
                {
                    "energy": rng.uniform(100.0, 1000.0, n).astype(np.float32),
                    "vtx_x": rng.uniform(-100, 100, n).astype(np.float32),
                    "vtx_y": rng.uniform(-100, 100, n).astype(np.float32),
                    "vtx_z": rng.uniform(-100, 100, n).astype(np.float32),
                    "dir_x": direction[:, 0].astype(np.float32),
                    "dir_y": direction[:, 1].astype(np.float32),
                    "dir_z": direction[:, 2].astype(np.float32),
                    "pid": rng.choice(np.array(pdg_codes, dtype=np.int32), n),
                }
            )
            if start == 0:  # mktree: a TTree (assigning a dict would write an RNTuple)
                f.mktree(
                    tree, {k: ak.type(v) if isinstance(v, ak.Array) else v.dtype for k, v in branches.items()}
                )
            f[tree].extend(branches)
    return path
