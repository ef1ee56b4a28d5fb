"""The ``graphs`` suite: kNN graphs by event size and the tracking graph stages of a 100k-hit event.

Rates are per CPU-second of this process (``time.process_time``), so a shared machine inflates them less
than wall time would; medians of ``graphs.repeat`` runs after one warm-up.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from recoml.contracts.batch import HitBatch
from recoml.data import neighbours
from recoml.data.neighbours import neighbour_table
from recoml.families.tracking.construction import GeometricConstructor
from recoml.families.tracking.graph import TrackGraphBuilder
from recoml.families.tracking.metric_learning import embedding_graph
from recoml.families.tracking.models.metric_learning import HitEmbedding
from recoml.families.tracking.simulation import TrackerSimConfig, simulate_tracker
from recoml.utils.cli import CONF_DIR


def cpu_seconds(fn: Callable[[], Any], repeat: int) -> float:
    """Median CPU seconds of ``fn()`` over ``repeat`` calls after one warm-up."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        fn()
        times.append(time.process_time() - t0)
    return statistics.median(times)


def knn_rows(cfg: DictConfig) -> list[dict[str, Any]]:
    """k nearest neighbours of uniformly random points on a cylinder surface (PMT-like), KD-tree path
    and the block path (what a GPU runs), events per CPU-second."""
    g = cfg.graphs
    rows = []
    generator = torch.Generator().manual_seed(0)
    for hits in g.hits:
        n_events = max(1, int(g.hits_per_batch) // int(hits))
        phi = 2 * torch.pi * torch.rand(n_events * hits, generator=generator)
        y = 300 * torch.rand(n_events * hits, generator=generator) - 150
        pos = torch.stack([300 * torch.cos(phi), y, 300 * torch.sin(phi)], dim=1)
        counts = torch.full((n_events,), int(hits))
        for path, max_dim in (("kd-tree", neighbours.KDTREE_MAX_DIM), ("blocks", 0)):
            if path == "blocks" and hits > int(g.max_hits_blocks):
                continue
            saved, neighbours.KDTREE_MAX_DIM = neighbours.KDTREE_MAX_DIM, max_dim
            try:
                seconds = cpu_seconds(
                    functools.partial(neighbour_table, pos, counts, int(g.k)), int(g.repeat)
                )
            finally:
                neighbours.KDTREE_MAX_DIM = saved
            rows.append(
                {
                    "suite": "graphs",
                    "case": f"kNN k={g.k}, {hits} hits/event, {path}",
                    "events_per_s": n_events / seconds,
                    "device": "cpu (per CPU-second)",
                }
            )
        seconds = cpu_seconds(
            functools.partial(_library_queries, pos.double().numpy(), hits, int(g.k)), int(g.repeat)
        )
        rows.append(
            {
                "suite": "graphs",
                "case": f"kNN k={g.k}, {hits} hits/event, pykdtree query alone (this machine's floor)",
                "events_per_s": n_events / seconds,
                "device": "cpu (per CPU-second)",
            }
        )
    return rows


def _library_queries(points: np.ndarray, hits: int, k: int) -> None:
    """The KD-tree library's own build + query per event (the call the kd-tree path makes), nothing else:
    what the kd-tree row is bounded by on this machine (the targets of issue 15 were set from this on
    another machine)."""
    for start in range(0, len(points), hits):
        block = points[start : start + hits]
        neighbours._query(block, k + 1, None)


def tracking_rows(cfg: DictConfig) -> list[dict[str, Any]]:
    """Geometric graph construction and the metric-learning radius graph of one toy event (~10.4 hits
    per particle), seconds per event as ``1 / events_per_s``."""
    g = cfg.graphs
    conf = Path(CONF_DIR)
    det = instantiate(OmegaConf.load(conf / "detector" / "toy_tracker.yaml"))
    event = simulate_tracker(det, 1, TrackerSimConfig(n_particles=int(g.particles)), seed=0)
    hits = {k[4:]: torch.as_tensor(v) for k, v in event.items() if k.startswith("hit_")}
    batch = HitBatch(hits=hits, offsets=torch.tensor([0, len(event["hit_x"])]))
    model = OmegaConf.load(conf / "model" / "interaction_network.yaml")
    options = {k: v for k, v in model.representation.constructors.geometric.items() if not k.startswith("_")}
    constructor = GeometricConstructor(det, **options)
    builder = TrackGraphBuilder(det, constructor=constructor, features=tuple(model.representation.features))
    rows = []
    with torch.no_grad():
        graph = builder(batch)
        track_hits = graph.hits
        n = track_hits.num_hits
        cases: dict[str, Callable[[], Any]] = {
            "geometric graph construction": lambda: constructor(track_hits),
            "geometric graph + features + truth": lambda: builder(batch),
        }
        # A trained embedding puts a track's hits together: mimic one (hits of a particle around a random
        # point, spread 0.02 in 12-d) so the radius graph has the sparsity it has in use.
        # Noise hits (particle 0) get points of their own.
        truth = track_hits.particle_id
        particle = torch.arange(n) // 10 if truth is None else torch.unique(truth, return_inverse=True)[1]
        if truth is not None:
            particle = torch.where(truth == 0, int(particle.max()) + 1 + torch.arange(n), particle)
        generator = torch.Generator().manual_seed(1)
        centres = torch.rand(int(particle.max()) + 1, 12, generator=generator)
        embedded = centres[particle] + 0.02 * torch.randn(n, 12, generator=generator)
        cases["metric-learning radius graph (r=0.1, k=50, oriented)"] = lambda: embedding_graph(
            embedded, track_hits, r=0.1, k=50
        )
        net = HitEmbedding(len(("x", "y", "z", "r", "eta")), 12, hidden=256, n_layers=4)
        features = torch.randn(n, 5, generator=generator)
        cases["metric-learning embedding MLP (256 x 4)"] = lambda: net.embed(features)
        for name, fn in cases.items():
            seconds = cpu_seconds(fn, int(g.repeat))
            rows.append(
                {
                    "suite": "graphs",
                    "case": f"{name}, {n} hits: {seconds:.2f} CPU-s",
                    "events_per_s": 1 / seconds,
                    "device": "cpu (per CPU-second)",
                }
            )
    return rows


def bench_graphs(cfg: DictConfig) -> list[dict[str, Any]]:
    return knn_rows(cfg) + tracking_rows(cfg)
