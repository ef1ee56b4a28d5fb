"""The one kNN/radius graph builder (recoml.data.neighbours): KD-tree and block paths against brute force,
on random and degenerate inputs (duplicate points, empty events, fewer hits than k)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recoml.data import neighbours
from recoml.data.neighbours import knn_graph, neighbour_table, radius_graph
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
