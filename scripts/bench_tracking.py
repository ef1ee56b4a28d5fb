"""Per-event time of each GNN tracking stage on a TrackML-sized toy event (~100,000 hits).

    python scripts/bench_tracking.py                          # CPU, 10,000 particles (~104k hits)
    python scripts/bench_tracking.py --device cuda            # on a GPU
    python scripts/bench_tracking.py --checkpoint <edge-classifier run>/checkpoints/last.ckpt
    python scripts/bench_tracking.py --embedding              # also the metric-learning graph (slow on CPU)

Stages timed (median of ``--repeat`` runs after one warm-up): geometric graph construction (layer pairs +
cuts, edge features and truth included), metric-learning graph construction (embedding MLP + radius graph,
with ``--embedding``; an untrained embedding unless ``--ml-checkpoint``), Interaction Network inference
(the checkpoint's, or a default-sized untrained one), track building by connected components and by
walkthrough. Prints hits, edges and seconds per event for each stage.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from recoml.conf import CONF_DIR


def timed(fn, device: torch.device, repeat: int):
    """(result, median seconds) of ``fn()`` after one warm-up call."""
    out = fn()
    times = []
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return out, statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--particles", type=int, default=10000, help="particles per event (~10.4 hits each)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--checkpoint", default=None, help="edge-classifier checkpoint (else untrained IN)")
    parser.add_argument("--embedding", action="store_true", help="also time metric-learning graph building")
    parser.add_argument("--ml-checkpoint", default=None, help="metric-learning checkpoint for --embedding")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    from recoml.contracts.batch import HitBatch
    from recoml.families.tracking.building import build_tracks_cc, build_tracks_walkthrough
    from recoml.families.tracking.construction import GeometricConstructor
    from recoml.families.tracking.graph import TrackGraphBuilder
    from recoml.families.tracking.metric_learning import embedding_graph
    from recoml.families.tracking.models.interaction_network import EdgeClassifier
    from recoml.families.tracking.models.metric_learning import HitEmbedding
    from recoml.families.tracking.simulation import TrackerSimConfig, simulate_tracker

    det = instantiate(OmegaConf.load(CONF_DIR / "detector" / "toy_tracker.yaml"))
    ev = simulate_tracker(det, 1, TrackerSimConfig(n_particles=args.particles), seed=args.seed)
    hits = {k[4:]: torch.as_tensor(v) for k, v in ev.items() if k.startswith("hit_")}
    batch = HitBatch(hits=hits, offsets=torch.tensor([0, len(ev["hit_x"])])).to(device)
    rows: list[tuple[str, float, str]] = []

    if args.checkpoint:
        from recoml import load_model

        module = load_model(args.checkpoint, map_location=str(device))
        builder, net = module.representation, module.net
    else:
        model = OmegaConf.load(CONF_DIR / "model" / "interaction_network.yaml")
        geo = dict(model.representation.constructors.geometric)
        geo.pop("_target_"), geo.pop("_partial_")
        builder = TrackGraphBuilder(
            det, constructor=GeometricConstructor(det, **geo), features=tuple(model.representation.features)
        )
        net_cfg = {k: v for k, v in model.net.items() if not k.startswith("_")}
        net = EdgeClassifier(builder.out_channels, 1, **net_cfg)
    builder, net = builder.to(device).eval(), net.to(device).eval()

    with torch.no_grad():
        graph, t_graph = timed(lambda: builder(batch), device, args.repeat)
        rows.append(("graph construction (geometric)", t_graph, f"{graph.num_edges} edges"))
        if args.embedding:
            ml = TrackGraphBuilder(det, features=("x", "y", "z", "r", "eta")).to(device)
            if args.ml_checkpoint:
                from recoml import load_model

                stage = load_model(args.ml_checkpoint, map_location=str(device))
                ml, emb = stage.representation.to(device), stage.net.to(device)
            else:
                emb = HitEmbedding(ml.out_channels, 12, hidden=256, n_layers=4).to(device)
            hits_ = graph.hits

            def ml_graph():
                return embedding_graph(emb.embed(ml.node_features(hits_)), hits_, r=0.1, k=50)

            edges, t_ml = timed(ml_graph, device, args.repeat)
            rows.append(("graph construction (metric learning)", t_ml, f"{edges.shape[1]} edges"))
        out, t_gnn = timed(lambda: net(graph), device, args.repeat)
        scores = out.logits.sigmoid()
        rows.append(("edge classification (IN)", t_gnn, f"{sum(p.numel() for p in net.parameters())} params"))
        n = graph.num_nodes
        tracks, t_cc = timed(lambda: build_tracks_cc(graph.edge_index, scores, n), device, args.repeat)
        rows.append(("track building (CC)", t_cc, f"{int(tracks.max()) + 1} tracks"))
        tracks, t_walk = timed(
            lambda: build_tracks_walkthrough(graph.edge_index, scores, n), device, args.repeat
        )
        rows.append(("track building (walkthrough)", t_walk, f"{int(tracks.max()) + 1} tracks"))

    print(
        f"event: {n} hits, {args.particles} particles; device {device}, "
        f"torch threads {torch.get_num_threads()}"
    )
    print(f"{'stage':40s} {'s/event':>9s}  notes")
    for name, sec, note in rows:
        print(f"{name:40s} {sec:9.3f}  {note}")
    total = t_graph + t_gnn + t_cc
    print(f"{'full chain (geometric + IN + CC)':40s} {total:9.3f}")


if __name__ == "__main__":
    main()
