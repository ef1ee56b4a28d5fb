"""Representations (images, graphs, points), kNN/radius graphs and feature normalization."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import yaml

from recoml.conf import CONF_DIR
from recoml.contracts.batch import HitBatch
from recoml.data.neighbours import edges_from_table, neighbour_table
from recoml.data.normalization import DEFAULT_FEATURES, FeatureNormalizer, HitFeatures, fit_normalizer
from recoml.data.representations import (
    C_WATER_CM_PER_NS,
    GraphBuilder,
    PointCloudBuilder,
    graphs,
)
from recoml.families.water_cherenkov import WCDetector, build_cylinder
from recoml.families.water_cherenkov import images as images_module
from recoml.families.water_cherenkov.images import ImageBuilder
from recoml.families.water_cherenkov.synthetic import random_hit_batch

CONF = CONF_DIR / "detector"


@functools.cache
def detector(name: str) -> WCDetector:
    cfg = yaml.safe_load((CONF / f"{name}.yaml").read_text())
    cfg.pop("_target_")
    return build_cylinder(**cfg)


def make_batch(events: list[list[tuple[int, float, float]]]) -> HitBatch:
    """HitBatch from per-event lists of (pmt, charge, time)."""
    flat = [hit for event in events for hit in event]
    offsets = torch.tensor([0] + list(np.cumsum([len(e) for e in events])), dtype=torch.int64)
    return HitBatch(
        hits={
            "pmt": torch.tensor([h[0] for h in flat], dtype=torch.int64),
            "charge": torch.tensor([h[1] for h in flat], dtype=torch.float32),
            "time": torch.tensor([h[2] for h in flat], dtype=torch.float32),
        },
        offsets=offsets,
    )


def event(batch: HitBatch, i: int) -> HitBatch:
    """Event ``i`` of ``batch`` alone."""
    a, b = int(batch.offsets[i]), int(batch.offsets[i + 1])
    return HitBatch(hits={k: v[a:b] for k, v in batch.hits.items()}, offsets=torch.tensor([0, b - a]))


def small_batch(sizes: list[int], seed: int = 0, det: str = "wcte") -> HitBatch:
    """Events of the given sizes on distinct random PMTs."""
    g = torch.Generator().manual_seed(seed)
    n_pmts = detector(det).n_pmts
    events = []
    for n in sizes:
        pmts = torch.randperm(n_pmts, generator=g)[:n].tolist()
        q = (torch.rand(n, generator=g) * 5).tolist()
        t = (torch.randn(n, generator=g) * 10 + 100).tolist()
        events.append(list(zip(pmts, q, t)))
    return make_batch(events)


# --------------------------------------------------------------------------------------------- images
def test_image_hand_built_wcte_event():
    det = detector("wcte")
    height, width = det.image_shape
    assert (height, width) == (14, 16)
    barrel_module = 21 + 2 * 16 + 7  # 21 top-cap modules, then the barrel row by row: row 2, column 7
    pmts = [0, 19 * 5 + 18, barrel_module * 19 + 3]
    batch = make_batch([[(pmts[0], 1.5, 10.0), (pmts[1], 2.5, 20.0), (pmts[2], 4.0, 30.0)]])
    image = ImageBuilder(det)(batch)
    assert image.shape == (1, 38, 14, 16) and image.dtype == torch.float32
    # Hand-computed pixel of the barrel module: (cap_grid + row) * width + column.
    assert det.image_pixel[pmts[2]] == (5 + 2) * width + 7
    for pmt, (q, t) in zip(pmts, [(1.5, 10.0), (2.5, 20.0), (4.0, 30.0)]):
        row, col = divmod(int(det.image_pixel[pmt]), width)
        channel = pmt % 19
        assert image[0, channel, row, col] == q
        assert image[0, 19 + channel, row, col] == t
    assert torch.count_nonzero(image) == 6


def test_image_single_pmt_detector():
    det = detector("sk")
    height, width = det.image_shape
    batch = make_batch([[(7, 3.0, 5.0), (det.n_pmts - 1, 1.0, 8.0)], [(7, 2.0, 1.0)]])
    builder = ImageBuilder(det)
    image = builder(batch)
    assert image.shape == (2, 2, height, width) and builder.out_channels == 2
    assert builder.feature_names == ["charge", "time"]
    row, col = divmod(int(det.image_pixel[7]), width)
    assert image[0, 0, row, col] == 3.0 and image[0, 1, row, col] == 5.0
    assert image[1, 0, row, col] == 2.0 and image[1, 1, row, col] == 1.0
    row, col = divmod(int(det.image_pixel[-1]), width)
    assert image[0, 0, row, col] == 1.0 and row >= 49 + 51  # bottom cap: below cap_grid + barrel_rows
    assert torch.count_nonzero(image) == 6


def test_image_charge_is_conserved_and_duplicates_reduce():
    det = detector("wcte")
    batch = random_hit_batch(det, 16, 50, generator=torch.Generator().manual_seed(1))
    image = ImageBuilder(det)(batch)
    assert torch.allclose(image[:, :19].sum(), batch.hits["charge"].sum(), rtol=1e-5)
    per_event = image[:, :19].sum(dim=(1, 2, 3))
    expected = torch.stack([event(batch, i).hits["charge"].sum() for i in range(16)])
    assert torch.allclose(per_event, expected, rtol=1e-5)
    # Two hits on one PMT: charges add, the time is the earliest.
    image = ImageBuilder(det)(make_batch([[(40, 1.0, 30.0), (40, 2.0, 20.0)]]))
    row, col = divmod(int(det.image_pixel[40]), det.image_shape[1])
    assert image[0, 40 % 19, row, col] == 3.0 and image[0, 19 + 40 % 19, row, col] == 20.0
    latest = ImageBuilder(det, reduce={"time": "amax"})(make_batch([[(40, 1.0, 30.0), (40, 2.0, 20.0)]]))
    assert latest[0, 19 + 40 % 19, row, col] == 30.0


def test_image_batch_equals_one_at_a_time_and_geometry_channels():
    det = detector("wcte")
    batch = small_batch([5, 0, 30, 1])
    builder = ImageBuilder(det, geometry_channels=True)
    assert builder.out_channels == 42 and builder.feature_names[-4:] == [
        "geom_x",
        "geom_y",
        "geom_z",
        "geom_mask",
    ]
    image = builder(batch)
    for i in range(batch.n_events):
        assert torch.equal(image[i : i + 1], builder(event(batch, i)))
    geom = image[1, 38:]
    assert torch.equal(image[1, :38], torch.zeros_like(image[1, :38]))  # empty event: no hit channel set
    assert int(geom[3].sum()) == det.n_modules  # mask: one pixel per module
    top_centre = (geom[1] > 0.99).nonzero().tolist()
    assert len(top_centre) == 21  # the top-cap modules sit at y / half_height = 1


def test_image_empty_batches_and_normalizer():
    det = detector("wcte")
    builder = ImageBuilder(det)
    assert torch.count_nonzero(builder(make_batch([[], []]))) == 0
    assert builder(make_batch([])).shape == (0, 38, 14, 16)
    norm = FeatureNormalizer(
        ("charge", "time"), log_features=("charge",), mean={"time": 100.0}, std={"time": 10.0}
    )
    image = ImageBuilder(det, normalizer=norm)(make_batch([[(0, np.e - 1, 120.0)]]))
    assert image[0, 0].max() == pytest.approx(1.0) and image[0, 19].max() == pytest.approx(2.0)


# --------------------------------------------------------------------------------------------- graphs
def test_graph_builder_features_and_events():
    det = detector("wcte")
    batch = small_batch([20, 0, 1, 40])
    graph = GraphBuilder(det, k=8)(batch)
    assert graph.num_graphs == 4 and graph.x.shape == (61, 8) and graph.pos.shape == (61, 3)
    pmt = batch.hits["pmt"]
    assert torch.equal(graph.x[:, :3], torch.as_tensor(det.pmt_positions)[pmt])
    assert torch.equal(graph.x[:, 3:6], torch.as_tensor(det.pmt_directions)[pmt])
    assert torch.equal(graph.x[:, 6], batch.hits["charge"]) and torch.equal(graph.x[:, 7], batch.hits["time"])
    assert torch.equal(graph.batch, torch.tensor([0] * 20 + [2] + [3] * 40))
    assert not bool(((graph.batch[graph.edge_index[1]] == 1) | (graph.batch[graph.edge_index[1]] == 2)).any())
    assert torch.equal(graph.batch[graph.edge_index[0]], graph.batch[graph.edge_index[1]])
    # Each event alone gives the same edges, shifted by the event's first node.
    for i in (0, 3):
        alone = GraphBuilder(det, k=8)(event(batch, i)).edge_index + int(batch.offsets[i])
        mine = graph.edge_index[:, graph.batch[graph.edge_index[1]] == i]
        assert torch.equal(alone, mine)
    assert GraphBuilder(det)(make_batch([[], []])).edge_index.shape == (2, 0)
    assert graph.to("cpu").edge_index is not None


def test_space_time_knn_uses_time():
    det = detector("sk")
    # Three PMTs of the top barrel row (after the 1,749 top-cap PMTs): b is next to a, c further away.
    pos = torch.as_tensor(det.pmt_positions)
    a, b, c = 1749 + 21, 1749 + 22, 1749 + 24
    assert det.pmt_location[[a, b, c]].tolist() == [1, 1, 1]
    assert (pos[a] - pos[b]).norm() < (pos[a] - pos[c]).norm()
    batch = make_batch([[(a, 1.0, 0.0), (b, 1.0, 100.0), (c, 1.0, 0.0)]])
    space = GraphBuilder(det, k=1)(batch)
    space_time = GraphBuilder(det, k=1, space_time=True)(batch)
    assert space_time.pos.shape == (3, 4) and space_time.pos[1, 3] == pytest.approx(100 * C_WATER_CM_PER_NS)
    # Node 0's nearest neighbour: node 1 in space, node 2 in space-time (node 1 is 100 ns late).
    assert space.edge_index[:, 0].tolist() == [1, 0] and space_time.edge_index[:, 0].tolist() == [2, 0]


# --------------------------------------------------------------------------------------------- points
def test_point_cloud():
    det = detector("wcte")
    batch = small_batch([3, 0, 5])
    points = PointCloudBuilder(det)(batch)
    assert points.x.shape == (3, 5, 8) and points.mask.tolist()[1] == [False] * 5
    assert points.mask.sum(1).tolist() == [3, 0, 5]
    features = HitFeatures(det)(batch)
    assert torch.equal(points.x[points.mask], features)
    assert torch.equal(points.index[points.mask], torch.arange(8))
    assert bool((points.x[~points.mask] == 0).all()) and bool((points.index[~points.mask] == -1).all())
    capped = PointCloudBuilder(det, max_points=2)(batch)
    assert capped.x.shape == (3, 2, 8) and capped.mask.sum(1).tolist() == [2, 0, 2]
    for i, (a, b) in enumerate([(0, 3), (3, 3), (3, 8)]):
        if a == b:
            continue
        top = torch.sort(batch.hits["charge"][a:b], descending=True).values[:2]
        assert torch.equal(capped.x[i, :, 6], top)
    empty = PointCloudBuilder(det)(make_batch([[], []]))
    assert empty.x.shape == (2, 1, 8) and not bool(empty.mask.any())


# --------------------------------------------------------------------------------------------- normalization
def test_fit_normalizer_matches_numpy_and_is_saved():
    det = detector("wcte")
    batches = [
        random_hit_batch(det, n, 40, generator=torch.Generator().manual_seed(n)) for n in (3, 7, 1, 12)
    ]
    norm = fit_normalizer(iter(batches), det, DEFAULT_FEATURES, log_features=("charge",))
    charge = np.concatenate([b.hits["charge"].numpy() for b in batches]).astype(np.float64)
    time = np.concatenate([b.hits["time"].numpy() for b in batches]).astype(np.float64)
    mean, std = norm.stats("charge")
    assert float(mean) == pytest.approx(np.log1p(charge).mean(), rel=1e-6)
    assert float(std) == pytest.approx(np.log1p(charge).std(), rel=1e-6)
    assert float(norm.stats("time")[0]) == pytest.approx(time.mean(), rel=1e-6)
    assert float(norm.stats("time")[1]) == pytest.approx(time.std(), rel=1e-5)
    assert float(norm.stats("x")[1]) == pytest.approx(det.radius) and float(
        norm.stats("y")[1]
    ) == pytest.approx(det.half_height)
    state = norm.state_dict()
    assert {"mean_charge", "std_charge", "mean_time", "std_time", "std_x"} <= set(state)
    builder = GraphBuilder(det, normalizer=norm)
    assert "features.normalizer.std_time" in builder.state_dict()
    assert "normalizer.mean_charge" in ImageBuilder(det, normalizer=norm).state_dict()
    assert "image_pixel" not in ImageBuilder(det).state_dict()  # geometry comes from the config
    restored = FeatureNormalizer(DEFAULT_FEATURES, log_features=("charge",))
    restored.load_state_dict(state)
    x = builder(batches[0]).x
    assert torch.allclose(x[:, 6].mean(), torch.log1p(batches[0].hits["charge"]).sub(mean).div(std).mean())
    assert torch.equal(GraphBuilder(det, normalizer=restored)(batches[0]).x, x)
    assert float(x[:, 0].abs().max()) <= 1.2  # positions over the radius


def test_fit_normalizer_geometry_and_errors():
    det = detector("sk")
    batches = [small_batch([30, 20], seed=5, det="sk")]
    norm = fit_normalizer(batches, det, ("x", "charge"), log_features=(), fit_geometry=True)
    x = torch.as_tensor(det.pmt_positions)[batches[0].hits["pmt"], 0].double()
    assert float(norm.stats("x")[0]) == pytest.approx(float(x.mean()), rel=1e-5)
    with pytest.raises(ValueError):
        fit_normalizer([make_batch([[]])], det, ("charge",))
    with pytest.raises(ValueError):
        ImageBuilder(det, normalizer=FeatureNormalizer(("charge",)))


@pytest.mark.parametrize("geometry_channels", [False, True])
@pytest.mark.parametrize("chunk_bytes", [1, None, 1 << 40], ids=["event-chunks", "default-chunks", "whole"])
def test_image_buffer_reuse_never_leaks_hits_into_the_next_batch(
    geometry_channels: bool, chunk_bytes: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reused output buffer: each batch's images equal a fresh builder's, whatever came before
    (a larger batch, more hits, other PMTs), and the previous images are overwritten, not copied; the
    same whether the CPU paints an event at a time, a few MB of events (12 WCTE events) or all at once."""
    if chunk_bytes is not None:
        monkeypatch.setattr(images_module, "_CHUNK_BYTES", chunk_bytes)
    det = detector("wcte")
    g = torch.Generator().manual_seed(11)
    batches = [
        random_hit_batch(det, 40, 300, generator=g),
        random_hit_batch(det, 25, 50, generator=g),  # fewer events and hits: stale pixels would show
        make_batch([[], []]),
        random_hit_batch(det, 40, 10, generator=g),
    ]
    reused = ImageBuilder(det, geometry_channels=geometry_channels, reuse_output=True)
    fresh = ImageBuilder(det, geometry_channels=geometry_channels)
    previous = None
    for batch in batches:
        image = reused(batch)
        assert torch.equal(image, fresh(batch))
        if previous is not None and len(image):
            assert image.untyped_storage().data_ptr() == previous.untyped_storage().data_ptr()
        previous = image


@pytest.mark.parametrize("chunk_bytes", [1, None], ids=["event-chunks", "default-chunks"])
def test_image_finish_into_clears_a_slot_whole_or_by_index(
    chunk_bytes: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``finish_into`` on an output that held a larger batch: cleared whole (``written=None``, what a
    slot gets after a batch too dense to record) or by the earlier record, the images equal a fresh
    builder's and no pixel of the earlier batch survives, even in events beyond this batch."""
    if chunk_bytes is not None:
        monkeypatch.setattr(images_module, "_CHUNK_BYTES", chunk_bytes)
    det = detector("wcte")
    g = torch.Generator().manual_seed(3)
    big, small = random_hit_batch(det, 30, 200, generator=g), random_hit_batch(det, 7, 100, generator=g)
    builder = ImageBuilder(det)
    for clear_whole in (True, False):
        out = builder.new_output(30)
        _, written = builder.finish_into(builder.prepare(big), out, out.new_zeros(0, dtype=torch.int64))
        image, _ = builder.finish_into(builder.prepare(small), out, None if clear_whole else written)
        assert torch.equal(image, ImageBuilder(det)(small))
        assert not out[7:].any()


def test_inputs_prepared_in_dataloader_workers_equal_those_built_here(tmp_path) -> None:
    """CPU training with workers: images (as hits), graphs and point clouds prepared in 2 workers and
    finished here equal the builder's own output, batch after batch (the reused image buffer never
    carries one batch's hits into the next); the statistics sample stays raw hits."""
    from recoml.data.datamodule import EventDataModule
    from recoml.data.store import write_store

    det = detector("wcte")
    rng = np.random.default_rng(4)
    counts = rng.integers(0, 300, 64)
    counts[::7] = 0
    arrays = {
        "event_hits_index": np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64),
        "hit_pmt": rng.integers(0, det.n_pmts, counts.sum()).astype(np.int32),
        "hit_charge": rng.exponential(2.0, counts.sum()).astype(np.float32),
        "hit_time": rng.normal(900, 30, counts.sum()).astype(np.float32),
        "labels": rng.integers(0, 3, 64).astype(np.int32),
    }
    path = write_store(tmp_path / "store.h5", arrays)
    builders = {
        "image": ImageBuilder(det, reuse_output=True),
        "graph": GraphBuilder(det, k=4),
        "points": PointCloudBuilder(det),
    }
    for kind, builder in builders.items():
        dm = EventDataModule(path, batch_size=8, num_workers=2, fractions=(1.0, 0.0, 0.0))
        assert dm.build_in_workers(builder)
        assert next(iter(dm.statistics_sample(16))).inputs is None
        seen = 0
        for batch in dm.train_dataloader():
            assert batch.inputs is not None
            seen += 1
            got = builder.finish(batch.inputs)
            if kind == "image":  # the reused buffer against a fresh builder
                assert torch.equal(got, ImageBuilder(det)(batch))
                continue
            expected = builder(batch)
            for name in ("x", "edge_index", "mask", "index"):
                if hasattr(expected, name):
                    assert torch.equal(getattr(got, name), getattr(expected, name)), name
        assert seen == 8
    assert not EventDataModule(path, num_workers=0).build_in_workers(builders["image"])


def test_graph_edge_buffer_reuse_never_leaks_edges_into_the_next_batch() -> None:
    """The reused edge buffer: each batch's graph equals a fresh builder's whatever came before (more
    events, fewer hits, events too small for k neighbours), and the buffer is reused, not reallocated."""
    det = detector("wcte")
    g = torch.Generator().manual_seed(3)
    batches = [
        random_hit_batch(det, 30, 60, generator=g),
        random_hit_batch(det, 12, 20, generator=g),  # fewer edges: stale ones would show past E
        small_batch([1, 3, 0, 2]),  # fewer than k + 1 hits: the masked path, into the buffer too
        random_hit_batch(det, 20, 40, generator=g),
    ]
    reused, fresh = GraphBuilder(det, k=8, reuse_output=True), GraphBuilder(det, k=8)
    pointers = []
    for batch in batches:
        got, expected = reused(batch), fresh(batch)
        assert torch.equal(got.edge_index, expected.edge_index) and got.edge_index.is_contiguous()
        assert torch.equal(got.x, expected.x)
        pointers.append(got.edge_index.untyped_storage().data_ptr())
    assert pointers[0] == pointers[1] == pointers[2] == pointers[3]


@pytest.mark.parametrize("loop", [False, True])
def test_graph_builder_sensor_lists_equal_the_kdtree_up_to_ties(loop: bool) -> None:
    """Without time, on the CPU, the builder reads each PMT's list of nearest PMTs: its edges are the
    KD-tree's (neighbour_table on the hit positions) up to equally distant neighbours, events of every
    size (too small for k, larger than k, every PMT hit) included."""
    det = detector("wcte")
    batch = small_batch([0, 1, 8, 9, 2014, *range(20, 620, 30)], seed=11)
    k = 8
    graph = GraphBuilder(det, k=k, loop=loop)(batch)
    pos = torch.as_tensor(det.sensor_positions, dtype=torch.float32)[batch.hits["pmt"]]
    nbr, d2 = neighbour_table(pos, batch.offsets[1:] - batch.offsets[:-1], k, loop)
    kdtree = edges_from_table(nbr)
    assert torch.equal(graph.edge_index[1], kdtree[1])  # the same number of neighbours per centre
    length = (pos[graph.edge_index[0]] - pos[graph.edge_index[1]]).double().pow(2).sum(dim=1)
    torch.testing.assert_close(length, d2[d2.isfinite()].double(), rtol=1e-6, atol=1e-3)
    differ = graph.edge_index[0] != kdtree[0]
    assert float(differ.float().mean()) < 0.2  # ties among PMTs of one module (WCTE's mPMTs)
    # Where the neighbour differs, another neighbour of that centre is at the same distance in the other.
    kd_length = (pos[kdtree[0]] - pos[kdtree[1]]).double().pow(2).sum(dim=1)
    for edge in torch.nonzero(differ).flatten().tolist():
        same_centre = kdtree[1] == graph.edge_index[1, edge]
        assert bool((same_centre & ((kd_length - length[edge]).abs() < 1e-3)).any())


def test_graph_builder_keeps_the_kdtree_for_large_sensor_arrays(monkeypatch: pytest.MonkeyPatch) -> None:
    """Above SENSOR_TABLE_MAX_SENSORS PMTs (KM3NeT-sized arrays) no table is built: the KD-tree's edges."""
    det = detector("wcte")
    batch = small_batch([30, 5, 60], seed=2)
    lists = GraphBuilder(det, k=4)(batch)
    monkeypatch.setattr(graphs, "SENSOR_TABLE_MAX_SENSORS", 2000)
    monkeypatch.setattr(graphs, "sensor_table", None)  # would fail if called
    builder = GraphBuilder(det, k=4)
    assert not builder.sensor_lists
    tree = builder(batch)
    pos = torch.as_tensor(det.sensor_positions, dtype=torch.float32)[batch.hits["pmt"]]
    expected = edges_from_table(neighbour_table(pos, batch.offsets[1:] - batch.offsets[:-1], 4)[0])
    assert torch.equal(tree.edge_index, expected) and torch.equal(tree.edge_index[1], lists.edge_index[1])
