"""The one kNN/radius graph builder (recoml.data.neighbours): KD-tree and block paths against brute force,
on random and degenerate inputs (duplicate points, empty events, fewer hits than k); the fixed-sensor
lists against the KD-tree on the WCTE and HK geometries."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from recoml.conf import CONF_DIR
from recoml.data import neighbours
from recoml.data.neighbours import (
    knn_graph,
    neighbour_table,
    radius_graph,
    sensor_neighbour_table,
    sensor_table,
)
from recoml.errors import ConfigError, DataError


@pytest.fixture(params=["kdtree", "blocks"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test on both CPU paths: the KD-tree, and the GPU's block code (forced by a zero dim limit)."""
    if request.param == "blocks":
        monkeypatch.setattr(neighbours, "KDTREE_MAX_DIM", 0)
    return request.param


def brute_force(pos: torch.Tensor, sizes: list[int], k: int, loop: bool = False, r: float | None = None):
    """Per node, the sorted float64 distances of its ``k`` nearest graph-mates (within ``r``), by numpy."""
    p = pos.double().numpy()
    out, start = [], 0
    for n in sizes:
        block = p[start : start + n]
        d = np.sqrt(((block[:, None, :] - block[None, :, :]) ** 2).sum(-1))
        if not loop:
            np.fill_diagonal(d, np.inf)
        for row in d:
            kept = np.sort(row)[:k]
            kept = kept[np.isfinite(kept)]
            out.append(kept if r is None else kept[kept <= r])
        start += n
    return out


def edge_set(edge_index: torch.Tensor) -> set[tuple[int, int]]:
    return set(map(tuple, edge_index.t().tolist()))


def check_against_brute_force(edges: torch.Tensor, pos: torch.Tensor, sizes: list[int], expected) -> None:
    """Same neighbour distances as brute force for every centre, no cross-event or repeated edges."""
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes, dtype=torch.int64))
    assert edges.dtype == torch.int64 and edges.shape[0] == 2
    assert torch.equal(batch[edges[0]], batch[edges[1]])
    assert len(edge_set(edges)) == edges.shape[1]
    d = (pos.double()[edges[0]] - pos.double()[edges[1]]).norm(dim=1).numpy()
    centre = edges[1].numpy()
    assert np.all(np.diff(centre) >= 0), "edges ordered by centre"
    for i, want in enumerate(expected):
        got = d[centre == i]
        assert len(got) == len(want), f"node {i}: {len(got)} neighbours, expected {len(want)}"
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)  # nearest first


SIZES = [[1, 5, 17, 40, 0, 3, 100], [17] * 6, [0], [2], [60, 0, 0, 16, 1, 33], [250], []]


@pytest.mark.parametrize("sizes", SIZES)
@pytest.mark.parametrize("dim", [3, 4])
def test_knn_matches_brute_force(path: str, sizes: list[int], dim: int) -> None:
    g = torch.Generator().manual_seed(sum(sizes) + dim)
    pos = torch.rand(sum(sizes), dim, generator=g) * 100
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes, dtype=torch.int64))
    edges = knn_graph(pos, batch, k=16)
    check_against_brute_force(edges, pos, sizes, brute_force(pos, sizes, 16))
    check_against_brute_force(
        knn_graph(pos, batch, k=5, loop=True), pos, sizes, brute_force(pos, sizes, 5, loop=True)
    )
    if path == "blocks":
        for chunk in (1, 7, 300, 5000):  # row chunking, single events, groups of events
            assert torch.equal(knn_graph(pos, batch, k=16, chunk_size=chunk), edges)


def test_kdtree_and_blocks_find_the_same_edges(monkeypatch: pytest.MonkeyPatch) -> None:
    sizes = [300, 12, 0, 280, 1, 299]
    pos = torch.rand(sum(sizes), 4, generator=torch.Generator().manual_seed(5)) * 1000
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    tree = knn_graph(pos, batch, k=16)
    monkeypatch.setattr(neighbours, "KDTREE_MAX_DIM", 0)
    assert torch.equal(tree, knn_graph(pos, batch, k=16))  # no ties in random data: identical, in order


@pytest.mark.parametrize("n, k", [(5, 16), (17, 16), (40, 16), (3, 1)])
def test_duplicate_points(path: str, n: int, k: int) -> None:
    """All points of an event at one place (more copies than k too): k distinct neighbours at distance 0,
    never the node itself, never another event."""
    pos = torch.cat([torch.full((n, 3), 7.0), torch.full((n, 3), 7.0)])  # two events, same place
    sizes = [n, n]
    batch = torch.repeat_interleave(torch.arange(2), n)
    edges = knn_graph(pos, batch, k=k)
    check_against_brute_force(edges, pos, sizes, brute_force(pos, sizes, k))
    assert bool((edges[0] != edges[1]).all())
    loops = knn_graph(pos, batch, k=k, loop=True)
    assert int((loops[0] == loops[1]).sum()) <= 2 * n and loops.shape[1] == 2 * n * min(k, n)


def test_partly_duplicated_points(path: str) -> None:
    g = torch.Generator().manual_seed(2)
    base = torch.rand(30, 3, generator=g)
    pos = torch.cat([base, base[:10], base[:10]])  # 10 points three times
    edges = knn_graph(pos, None, k=4)
    check_against_brute_force(edges, pos, [50], brute_force(pos, [50], 4))


def test_empty_and_tiny_inputs(path: str) -> None:
    empty = knn_graph(torch.zeros(0, 3), torch.zeros(0, dtype=torch.int64), k=16)
    assert empty.shape == (2, 0) and empty.dtype == torch.int64
    assert knn_graph(torch.zeros(1, 3), None, k=16).shape == (2, 0)  # one hit: no neighbour
    assert edge_set(knn_graph(torch.zeros(1, 3), None, k=16, loop=True)) == {(0, 0)}
    nbr, dist2 = neighbour_table(torch.rand(3, 3), torch.tensor([0, 3, 0]), k=16)
    assert nbr.shape == (3, 3) and bool((nbr[:, 2] == -1).all()) and bool(torch.isinf(dist2[:, 2]).all())


@pytest.mark.parametrize("dim", [3, 8])
def test_radius_graph_matches_brute_force(path: str, dim: int) -> None:
    sizes = [40, 0, 3, 70, 1]
    pos = torch.rand(sum(sizes), dim, generator=torch.Generator().manual_seed(4))
    batch = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    r = 0.3 * dim**0.5
    edges = radius_graph(pos, batch, r=r, max_num_neighbors=100)
    check_against_brute_force(edges, pos, sizes, brute_force(pos, sizes, 100, r=r))
    capped = radius_graph(pos, batch, r=r, max_num_neighbors=3)  # the nearest 3 within r
    check_against_brute_force(capped, pos, sizes, brute_force(pos, sizes, 3, r=r))
    assert radius_graph(pos, batch, r=0.0).shape == (2, 0)


def test_radius_includes_the_boundary(path: str) -> None:
    pos = torch.tensor([[0.0, 0.0, 0.0], [3.0, 4.0, 0.0], [6.0, 8.0, 0.0]])  # distances 5, 5 and 10
    assert edge_set(radius_graph(pos, None, r=5.0)) == {(1, 0), (0, 1), (2, 1), (1, 2)}


def test_unsorted_batch_vector(path: str) -> None:
    g = torch.Generator().manual_seed(1)
    sizes = [6, 1, 3, 9]
    x = torch.randn(sum(sizes), 3, generator=g)
    batch = torch.repeat_interleave(torch.arange(4), torch.tensor(sizes))
    perm = torch.randperm(len(x), generator=g)
    shuffled = knn_graph(x[perm], batch[perm], k=4)
    assert {(int(perm[a]), int(perm[b])) for a, b in shuffled.t().tolist()} == edge_set(
        knn_graph(x, batch, k=4)
    )


def test_high_dimensional_features(path: str) -> None:
    """EdgeConv's dynamic graphs (64-d features): the same neighbours on both paths."""
    x = torch.randn(120, 64, generator=torch.Generator().manual_seed(0))
    sizes = [50, 70]
    batch = torch.repeat_interleave(torch.arange(2), torch.tensor(sizes))
    check_against_brute_force(knn_graph(x, batch, k=8), x, sizes, brute_force(x, sizes, 8))


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError, match="k must be >= 1"):
        knn_graph(torch.rand(4, 3), None, k=0)
    with pytest.raises(ConfigError, match="max_num_neighbors"):
        radius_graph(torch.rand(4, 3), None, r=1.0, max_num_neighbors=0)
    with pytest.raises(DataError, match="shape"):
        knn_graph(torch.rand(4), None, k=2)
    with pytest.raises(DataError, match="NaN"):
        knn_graph(torch.tensor([[0.0, 0, 0], [float("nan"), 0, 0]]), None, k=1)


# -- kNN on fixed sensors (sensor_table / sensor_neighbour_table) -----------------------------------------


@functools.cache
def sensor_positions(name: str) -> torch.Tensor:
    """The PMT positions of a detector of the shipped configs (WCTE 2,014 PMTs, HK 19,994)."""
    det = instantiate(OmegaConf.load(CONF_DIR / "detector" / f"{name}.yaml"))
    return torch.as_tensor(det.sensor_positions, dtype=torch.float32)


def assert_same_up_to_ties(got: tuple[torch.Tensor, torch.Tensor], want: tuple[torch.Tensor, torch.Tensor]):
    """Same squared distances row by row (nearest first, -1 / inf in the same places), and the same
    neighbours wherever a choice is forced: those strictly nearer than a row's furthest kept neighbour
    (among equally distant ones either table may keep any)."""
    (got_nbr, got_d2), (want_nbr, want_d2) = got, want
    assert got_nbr.shape == want_nbr.shape and got_nbr.dtype == torch.int64 and got_d2.dtype == torch.float32
    torch.testing.assert_close(got_d2, want_d2, rtol=1e-6, atol=1e-3)
    assert torch.equal(got_nbr < 0, want_nbr < 0)
    furthest = torch.where(torch.isinf(want_d2), -math.inf, want_d2).amax(dim=1, keepdim=True)
    forced = want_d2 < furthest * (1 - 1e-6)
    for row in torch.nonzero(forced.any(dim=1)).flatten().tolist():
        assert set(got_nbr[row][forced[row]].tolist()) == set(want_nbr[row][forced[row]].tolist()), row


def ring_event(positions: torch.Tensor, n_isolated: int, generator: torch.Generator) -> torch.Tensor:
    """Sensors of a Cherenkov-like ring (the sensors between 40% and 45% of the detector's size from a
    random sensor) plus ``n_isolated`` random sensors elsewhere: hits far from any other hit."""
    centre = positions[torch.randint(len(positions), (1,), generator=generator)]
    distance = (positions - centre).norm(dim=1)
    size = float(distance.max())
    ring = torch.nonzero((distance > 0.40 * size) & (distance < 0.45 * size)).flatten()
    others = torch.nonzero(distance < 0.2 * size).flatten()
    isolated = others[torch.randperm(len(others), generator=generator)[:n_isolated]]
    return torch.cat([ring, isolated])


@pytest.mark.parametrize(("name", "width"), [("wcte", neighbours.SENSOR_TABLE_WIDTH), ("hk", 256)])
@pytest.mark.parametrize("loop", [False, True])
def test_sensor_lists_find_the_kdtree_neighbours(name: str, width: int, loop: bool) -> None:
    """On the real geometries, random hit sensors (events of 0, 1, k, k + 1, 300, 2,000 and every sensor)
    and rings with isolated hits (the rows that run past the table, left to the KD-tree): the same
    neighbours as the KD-tree up to ties."""
    positions = sensor_positions(name)
    table = sensor_table(positions, width)
    g = torch.Generator().manual_seed(len(positions) + loop)
    k = 16
    events = [torch.randperm(len(positions), generator=g)[:n] for n in (0, 1, k, k + 1, 300, 2000)]
    events += [torch.randperm(len(positions), generator=g), ring_event(positions, 5, g)]
    events += [ring_event(positions, 1, g) for _ in range(3)]
    sensors = torch.cat(events)
    counts = torch.tensor([len(e) for e in events])
    got = sensor_neighbour_table(table, sensors, counts, k, loop)
    assert_same_up_to_ties(got, neighbour_table(positions[sensors], counts, k, loop))
    # Some isolated hits' k-th nearest hit lies beyond the end of their sensor's row: rows the lists
    # cannot finish, left to the KD-tree, were among those checked above.
    last = torch.as_tensor(table.order[sensors.numpy(), -1].astype(np.int64))
    reach = ((positions[last] - positions[sensors]).double() ** 2).sum(dim=1)
    beyond = torch.isfinite(got[1][:, -1]) & (got[1][:, -1].double() > reach)
    assert bool(beyond.any())
    # Small events against brute force too.
    small = [0, 1, k, k + 1]
    expected = brute_force(positions[sensors[: sum(small)]], small, k, loop)
    for row, want in enumerate(expected):
        have = got[1][row][torch.isfinite(got[1][row])].double().sqrt().numpy()
        np.testing.assert_allclose(have, want, rtol=1e-5, atol=1e-4)


def test_sensor_table_rows_are_the_nearest_sensors_in_order() -> None:
    """Each row: the other sensors, by (squared distance, id), the nearest ``width``; one table per
    positions and width in a process; int16 ids."""
    positions = sensor_positions("wcte")
    full = sensor_table(positions, 5000)
    assert full.complete and full.order.shape == (2014, 2013) and full.order.dtype == np.int16
    assert sensor_table(positions, 5000) is full
    p = positions.double().numpy()
    for sensor in (0, 777, 2013):
        d2 = ((p - p[sensor]) ** 2).sum(axis=1)
        expected = [s for s in np.lexsort((np.arange(len(p)), d2)) if s != sensor]
        assert full.order[sensor].tolist() == expected
    narrow = sensor_table(positions, 40)
    assert not narrow.complete and np.array_equal(narrow.order, full.order[:, :40])
    scaled = sensor_table(positions * 2, 40)  # a power of two: the same distances times 4, exactly
    assert scaled is not narrow and np.array_equal(scaled.order, narrow.order)


def test_two_hits_on_one_sensor_go_to_the_kdtree() -> None:
    """Real WCSim events can hold two digits of one PMT: such an event is searched by the KD-tree (the
    copy is a neighbour at distance 0, never the node itself), the others of the batch by the lists."""
    positions = sensor_positions("wcte")
    table = sensor_table(positions)
    g = torch.Generator().manual_seed(9)
    plain = torch.randperm(2014, generator=g)[:200]
    doubled = torch.randperm(2014, generator=g)[:100]
    doubled = torch.cat([doubled, doubled[:30]])
    sensors = torch.cat([plain, doubled, plain[:50]])
    counts = torch.tensor([200, 130, 50])
    for loop in (False, True):
        got = sensor_neighbour_table(table, sensors, counts, 16, loop)
        assert_same_up_to_ties(got, neighbour_table(positions[sensors], counts, 16, loop))
        copy = 200 + 100  # node 300 is the second hit of node 200's sensor
        assert int(got[0][copy, 1 if loop else 0]) in (200, copy) and float(got[1][copy, 0]) == 0.0


def test_sensor_lists_refuse_bad_input() -> None:
    table = sensor_table(sensor_positions("wcte"))
    with pytest.raises(DataError, match=r"sensor ids must be in \[0, 2014\)"):
        sensor_neighbour_table(table, torch.tensor([3, 2014]), torch.tensor([2]), 4)
    with pytest.raises(DataError, match="add up to 3 nodes"):
        sensor_neighbour_table(table, torch.tensor([3, 4]), torch.tensor([3]), 4)
    with pytest.raises(DataError, match="finite"):
        sensor_table(torch.tensor([[0.0, 0.0, 0.0], [math.nan, 0.0, 0.0]]))
    with pytest.raises(ConfigError, match="at most 32,768 sensors, got 32,769"):
        sensor_table(torch.rand(32769, 3))
    empty = sensor_neighbour_table(
        table, torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64), 4
    )
    assert empty[0].shape == (0, 0)


@pytest.mark.skipif(
    torch.multiprocessing.get_start_method(allow_none=False) != "fork",
    reason="DataLoader workers inherit the training process's tables only when forked",
)
def test_graph_workers_share_the_sensor_table_built_before_they_start(tmp_path, monkeypatch):
    """``build_in_workers`` builds the PMTs' lists of nearest PMTs in the training process
    (``Representation.warm_up``); the forked DataLoader workers build their graphs from that table and
    never build their own (HK: ~5 CPU-s per worker, train and validation workers alike)."""
    import os

    from recoml.data.datamodule import EventDataModule
    from recoml.data.representations.graphs import GraphBuilder
    from tests.data.test_representations import detector
    from tests.data.test_slots import write_hits

    built = tmp_path / "built_by"
    build = neighbours._sensor_order

    def recorded(points: np.ndarray, width: int, chunk: int = 2048) -> np.ndarray:
        with built.open("a") as f:
            f.write(f"{os.getpid()}\n")
        return build(points, width, chunk)

    monkeypatch.setattr(neighbours, "_sensor_order", recorded)
    monkeypatch.setattr(neighbours, "_SENSOR_TABLES", {})
    dm = EventDataModule(write_hits(tmp_path), batch_size=8, num_workers=2, fractions=(1.0, 0.0, 0.0))
    builder = GraphBuilder(detector("wcte"), k=4)
    assert builder.sensor_lists and dm.build_in_workers(builder)
    assert built.read_text().split() == [str(os.getpid())]
    graphs = [batch.inputs for batch in dm.train_dataloader()]
    assert graphs and all(g.edge_index.shape[1] > 0 for g in graphs)
    assert built.read_text().split() == [str(os.getpid())]  # no worker built one
