"""Model zoo: shapes, the properties each model promises (padding, masking, edges) and that each learns."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import nn
from torch_geometric.nn import TransformerConv

from recoml.data.neighbours import knn_graph
from recoml.errors import ConfigError
from recoml.models import (
    GAT,
    GCN,
    EdgeConvGNN,
    FourierEncoding,
    GraphNet,
    GraphSAGE,
    MLPHead,
    PointNet,
    ResNet,
    ResNet18,
    ResNet50,
)
from recoml.models import gnn as gnn_module
from recoml.models.cnn import CircularPad2d, CircularWidthConv2d
from recoml.models.gnn import CONVS


@dataclass
class Graphs:
    x: torch.Tensor
    pos: torch.Tensor
    edge_index: torch.Tensor | None
    batch: torch.Tensor
    num_graphs: int


@dataclass
class Points:
    x: torch.Tensor
    mask: torch.Tensor


def make_graphs(counts: list[int], n_features: int = 5, k: int = 4, seed: int = 0) -> Graphs:
    g = torch.Generator().manual_seed(seed)
    n = sum(counts)
    pos = torch.randn(n, 3, generator=g)
    x = torch.cat([pos, torch.randn(n, n_features - 3, generator=g)], dim=1)
    batch = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
    return Graphs(x, pos, knn_graph(pos, batch, k), batch, len(counts))


# ---------------------------------------------------------------- registry / heads / encodings


def test_every_model_option_declares_what_its_representation_builds() -> None:
    """Each conf/model option's network names the input kind its representation builds."""
    from hydra import compose, initialize_config_dir
    from hydra.utils import get_class

    from recoml.utils.cli import CONF_DIR

    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        for path in sorted((CONF_DIR / "model").glob("*.yaml")):
            model = compose("train", overrides=[f"model={path.stem}"]).model
            net, rep = get_class(model.net._target_), get_class(model.representation._target_)
            assert net.accepts == rep.builds, path.name


def test_mlp_head_any_leading_shape() -> None:
    head = MLPHead(6, 3, hidden=(8, 4), dropout=0.1)
    assert head(torch.randn(2, 5, 6)).shape == (2, 5, 3)
    assert isinstance(MLPHead(6, 3, hidden=()).net[0], nn.Linear)


def test_fourier_hand_values_and_shape() -> None:
    enc = FourierEncoding([1.0])
    out = enc(torch.tensor([[0.25]]))
    torch.testing.assert_close(out, torch.tensor([[0.25, 1.0, 0.0]]), atol=1e-6, rtol=0)
    enc = FourierEncoding([1.0, 2.0, 4.0])
    x = torch.rand(2, 3, 4)
    y = enc(x)
    assert y.shape == (2, 3, enc.out_features(4)) == (2, 3, 28)
    torch.testing.assert_close(y[..., :4], x)  # input first
    torch.testing.assert_close(y[..., 4 + 4 : 4 + 8], torch.sin(2 * math.pi * 2.0 * x))  # sin at scale 2
    torch.testing.assert_close(y[..., 4 + 12 : 4 + 16], torch.cos(2 * math.pi * 1.0 * x))  # cos at scale 1
    assert list(enc.parameters()) == [] and "scales" in dict(enc.named_buffers())
    assert FourierEncoding([1.0], include_input=False).out_features(4) == 8
    img = FourierEncoding([1.0, 2.0], dim=1)(torch.rand(2, 3, 5, 6))
    assert img.shape == (2, 15, 5, 6)


# ---------------------------------------------------------------- CNN


@pytest.mark.parametrize(
    ("depth", "width"), [(18, 8), (34, 4), (50, 16)], ids=["resnet18", "resnet34", "resnet50"]
)
@pytest.mark.parametrize("hw", [(14, 16), (37, 41)], ids=["wcte", "odd"])
def test_resnet_shapes(depth: int, width: int, hw: tuple[int, int]) -> None:
    model = ResNet(38, 4, depth=depth, width=width)
    assert model(torch.randn(2, 38, *hw)).shape == (2, 4)


@pytest.mark.parametrize("stem", ["small", "imagenet"])
@pytest.mark.parametrize("circular", [False, True])
def test_resnet_options(stem: str, circular: bool) -> None:
    model = ResNet18(2, 3, width=4, stem=stem, circular_padding=circular, dropout=0.2, fourier_scales=[1.0])
    x = torch.randn(2, 2, 14, 16).to(memory_format=torch.channels_last)
    out = model(x)
    assert out.shape == (2, 3) and torch.isfinite(out).all()
    assert model.stem[0].in_channels == 6  # 2 channels x (input, sin, cos)
    assert ResNet50(2, 3, width=4, stem_kernel=1).stem[0].kernel_size == (1, 1)


def test_circular_conv_is_equivariant_to_azimuth_rolls() -> None:
    torch.manual_seed(0)
    conv = CircularWidthConv2d(3, 4, 3)
    x = torch.randn(2, 3, 6, 9)
    for shift in (1, 4, -2):
        torch.testing.assert_close(conv(x.roll(shift, dims=-1)), conv(x).roll(shift, dims=-1))
    zero = nn.Conv2d(3, 4, 3, padding=1, bias=False)
    zero.load_state_dict(conv.state_dict())  # same weights, same keys
    a, b = conv(x), zero(x)
    torch.testing.assert_close(a[..., 1:-1], b[..., 1:-1])  # interior identical
    assert not torch.allclose(a[..., 0], b[..., 0]) and not torch.allclose(a[..., -1], b[..., -1])
    # the height is zero-padded: rolling along the height is not a symmetry
    assert not torch.allclose(conv(x.roll(1, dims=-2)), conv(x).roll(1, dims=-2))


@pytest.mark.parametrize("kernel, stride, width", [(3, 1, 9), (7, 2, 16), (3, 2, 1), (5, 1, 2)])
def test_circular_conv_equals_explicit_padding_on_both_axes(kernel: int, stride: int, width: int) -> None:
    """One copy (the height's zeros are the conv's own padding) gives what padding both axes explicitly
    (wrap the width, zero the height, then an unpadded conv) gives: outputs and gradients."""
    torch.manual_seed(0)
    conv = CircularWidthConv2d(3, 4, kernel, stride=stride)
    x = torch.randn(2, 3, 6, width, requires_grad=True)
    pad = kernel // 2
    wrapped = CircularPad2d(pad_w=pad, pad_h=pad)(x)  # the former two-copy path
    reference = F.conv2d(wrapped, conv.weight, stride=stride)
    out = conv(x)
    torch.testing.assert_close(out, reference, atol=1e-5, rtol=1e-5)
    grad = torch.randn_like(out)
    (gx,) = torch.autograd.grad(out, x, grad)
    (gx_ref,) = torch.autograd.grad(reference, x, grad)
    torch.testing.assert_close(gx, gx_ref, atol=1e-5, rtol=1e-5)


def test_circular_resnet_is_invariant_to_rolls_by_its_total_stride() -> None:
    torch.manual_seed(0)
    model = ResNet18(3, 2, width=4, circular_padding=True, zero_init_residual=False).eval()
    assert isinstance(model.stem[0], CircularWidthConv2d)
    x = torch.randn(2, 3, 14, 16)
    torch.testing.assert_close(model(x.roll(8, dims=-1)), model(x), atol=1e-5, rtol=1e-4)
    plain = ResNet18(3, 2, width=4, zero_init_residual=False).eval()
    plain.load_state_dict(model.state_dict())
    assert not torch.allclose(plain(x.roll(8, dims=-1)), plain(x), atol=1e-5)


# ---------------------------------------------------------------- PointNet


def test_pointnet_ignores_padding_and_handles_empty_events() -> None:
    torch.manual_seed(0)
    counts = torch.tensor([7, 3, 0, 10])
    mask = torch.arange(10) < counts[:, None]
    x = torch.randn(4, 10, 6)
    model = PointNet(6, 3, hidden=(16, 32), head_hidden=16, fourier_scales=[0.5])
    out = model(Points(x, mask))
    x2 = x.clone()
    x2[~mask] = torch.randn(int((~mask).sum()), 6) * 1e3
    b, i = (~mask).nonzero()[0]
    x2[b, i, 0] = float("nan")  # even a NaN in a padded slot must not leak
    torch.testing.assert_close(model(Points(x2, mask)), out)
    assert out.shape == (4, 3) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_pointnet_node_level() -> None:
    mask = torch.arange(5) < torch.tensor([[5], [2]])
    model = PointNet(4, 2, hidden=(8,), node_level=True)
    out = model(Points(torch.randn(2, 5, 4), mask))
    assert out.shape == (2, 5, 2)
    assert (out[~mask] == 0).all()


# ---------------------------------------------------------------- kNN and GNNs


@pytest.mark.parametrize("dynamic", [False, True])
@pytest.mark.parametrize("node_level", [False, True])
def test_edgeconv_shapes(dynamic: bool, node_level: bool) -> None:
    data = make_graphs([12, 5, 9])
    model = EdgeConvGNN(5, 3, hidden=8, n_layers=2, k=4, dynamic=dynamic, node_level=node_level)
    out = model(data)
    assert out.shape == ((26, 3) if node_level else (3, 3))


def test_edgeconv_static_uses_given_edges_and_is_permutation_invariant() -> None:
    torch.manual_seed(0)
    data = make_graphs([10, 7, 12])
    model = EdgeConvGNN(5, 2, hidden=8, n_layers=2).eval()
    node_model = EdgeConvGNN(5, 2, hidden=8, n_layers=2, node_level=True).eval()
    ref, ref_nodes = model(data), node_model(data)
    # permute nodes within each graph (batch vector unchanged) and relabel the edges consistently
    perm = torch.cat([torch.randperm(c) + o for c, o in ((10, 0), (7, 10), (12, 17))])
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(len(perm))
    permuted = Graphs(data.x[perm], data.pos[perm], inv[data.edge_index], data.batch, 3)
    torch.testing.assert_close(model(permuted), ref, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(node_model(permuted), ref_nodes[perm], atol=1e-5, rtol=1e-4)
    # the given edges matter: other edges, other answer
    other = Graphs(data.x, data.pos, knn_graph(data.pos, data.batch, 2), data.batch, 3)
    assert not torch.allclose(model(other), ref)


def test_dynamic_edgeconv_rebuilds_graphs_within_events(monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[torch.Tensor] = []

    def spy(*args: object, **kwargs: object) -> torch.Tensor:
        ei = knn_graph(*args, **kwargs)
        built.append(ei)
        return ei

    monkeypatch.setattr(gnn_module, "knn_graph", spy)
    data = make_graphs([8, 3, 11])
    model = EdgeConvGNN(5, 2, hidden=8, n_layers=3, k=4, dynamic=True)
    model(data)
    assert len(built) == 2  # before layers 2 and 3
    for ei in built:
        assert (data.batch[ei[0]] == data.batch[ei[1]]).all()
        assert not torch.equal(ei, data.edge_index)


@pytest.mark.parametrize("conv", sorted(CONVS))
@pytest.mark.parametrize("node_level", [False, True])
def test_graphnet_named_convs(conv: str, node_level: bool) -> None:
    data = make_graphs([6, 9])
    out = GraphNet(5, 3, conv=conv, hidden=8, n_layers=2, node_level=node_level)(data)
    assert out.shape == ((15, 3) if node_level else (2, 3))


def test_graphnet_accepts_a_hydra_partial() -> None:
    conv = instantiate({"_target_": "torch_geometric.nn.TransformerConv", "_partial_": True, "heads": 2})
    assert isinstance(conv, functools.partial)
    model = GraphNet(5, 3, conv=conv, hidden=16, n_layers=2, norm="layer", conv_kwargs={"beta": True})
    assert all(isinstance(c, TransformerConv) and c.out_channels * c.heads == 16 for c in model.convs)
    assert model(make_graphs([7, 4])).shape == (2, 3)


def test_gat_heads_keep_width() -> None:
    model = GAT(5, 2, heads=4, hidden=32, n_layers=2)
    assert all(c.heads == 4 and c.out_channels == 8 for c in model.convs)
    assert model(make_graphs([5, 6])).shape == (2, 2)
    assert GAT(5, 2, heads=2, v2=False, hidden=8, conv_kwargs={"concat": False}).convs[0].out_channels == 8
    with pytest.raises(ConfigError):
        GAT(5, 2, heads=3, hidden=32)


def test_named_graphnets_and_fourier_accounting() -> None:
    data = make_graphs([5, 6])
    for cls in (GCN, GraphSAGE):
        assert cls(5, 2, hidden=8, norm=None, residual=False)(data).shape == (2, 2)
    model = GCN(5, 2, hidden=8, fourier_scales=[1.0, 2.0])
    assert model.encoder[0].in_features == 25
    assert model(data).shape == (2, 2)
    assert EdgeConvGNN(5, 2, hidden=8, fourier_scales=[1.0]).convs[0].nn[0].in_features == 30


def test_graph_models_handle_empty_graphs() -> None:
    data = make_graphs([5, 6])
    data.num_graphs = 3  # a third event without hits
    for model in (EdgeConvGNN(5, 2, hidden=8), GCN(5, 2, hidden=8)):
        out = model(data)
        assert out.shape == (3, 2) and torch.isfinite(out).all()


# ---------------------------------------------------------------- learning


def point_task(n_events: int = 48, n_max: int = 24, seed: int = 0) -> tuple[Points, torch.Tensor]:
    """Class 1 events are spheres of radius 2, class 0 radius 1; hit counts vary."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n_events) % 2
    d = F.normalize(torch.randn(n_events, n_max, 3, generator=g), dim=-1)
    r = (1.0 + y.float()).view(-1, 1, 1) * (1 + 0.05 * torch.randn(n_events, n_max, 1, generator=g))
    counts = torch.randint(6, n_max + 1, (n_events,), generator=g)
    mask = torch.arange(n_max) < counts[:, None]
    return Points(d * r, mask), y


def as_graphs(points: Points, k: int = 6) -> Graphs:
    x = points.x[points.mask]
    batch = torch.arange(len(points.x)).repeat_interleave(points.mask.sum(1))
    return Graphs(x, x, knn_graph(x, batch, k), batch, len(points.x))


def fit(
    model: nn.Module, inputs: object, y: torch.Tensor, steps: int, lr: float = 3e-3
) -> tuple[float, float, float]:
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = F.cross_entropy(model(inputs), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        acc = (model(inputs).argmax(-1) == y).float().mean().item()
    return losses[0], min(losses[-5:]), acc


def test_resnet_learns() -> None:
    torch.manual_seed(0)
    n = 32
    y = torch.arange(n) % 2
    img = 0.3 * torch.randn(n, 2, 14, 16)
    rows = torch.randint(0, 14, (n,))
    cols = torch.randint(0, 16, (n,))
    for i in range(n):  # class 0: a horizontal line, class 1: a vertical line
        if y[i] == 0:
            img[i, 0, rows[i], :] += 2.0
        else:
            img[i, 0, :, cols[i]] += 2.0
    first, last, acc = fit(ResNet18(2, 2, width=16, circular_padding=True), img, y, steps=25)
    assert last < 0.5 * first and acc >= 0.9


@pytest.mark.parametrize(
    "make",
    [
        lambda: PointNet(3, 2, hidden=(32, 64), head_hidden=32),
        lambda: EdgeConvGNN(3, 2, hidden=16, n_layers=2),
        lambda: GCN(3, 2, hidden=32, n_layers=2),
    ],
    ids=["pointnet", "edgeconv", "gcn"],
)
def test_point_and_graph_models_learn(make) -> None:
    torch.manual_seed(0)
    model = make()
    points, y = point_task()
    inputs = points if model.accepts == "points" else as_graphs(points)
    first, last, acc = fit(model, inputs, y, steps=40)
    assert last < 0.5 * first and acc >= 0.9
