"""Tasks and metrics against hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from recoml.contracts.batch import HitBatch
from recoml.errors import DataError
from recoml.metrics import PairAccuracy, QuantileMetric
from recoml.tasks import (
    ClassificationTask,
    DirectionTask,
    EnergyTask,
    HitClassificationTask,
    MultiTask,
    VertexTask,
)
from recoml.tasks.regression import angles_to_direction, direction_to_angles
from recoml.tasks.schedulers import warmup_cosine


def _batch(targets: dict[str, torch.Tensor], hits: dict[str, torch.Tensor] | None = None) -> HitBatch:
    n = len(next(iter(targets.values()))) if targets else 1
    return HitBatch(hits=hits or {}, offsets=torch.zeros(n + 1, dtype=torch.long), targets=targets)


def test_pair_accuracy_hand_case() -> None:
    # classes gamma 0, e 1, mu 2; only events with truth e or mu count, decided by p_e vs p_mu.
    probs = torch.tensor([[0.0, 0.6, 0.4], [0.8, 0.1, 0.1], [0.9, 0.02, 0.08], [0.5, 0.5, 0.0]])
    truth = torch.tensor([1, 1, 2, 0])
    metric = PairAccuracy(1, 2)
    metric.update(probs, truth)
    # event 0: e, p_e > p_mu: right; event 1: e, tie says mu: wrong; event 2: mu, right; event 3 ignored.
    assert metric.compute().item() == pytest.approx(2 / 3)


def test_quantile_metric_is_68_percent_of_absolute_values() -> None:
    metric = QuantileMetric(0.5)
    metric.update(torch.tensor([-3.0, 1.0, 2.0]))
    assert metric.compute().item() == pytest.approx(2.0)


def test_classification_maps_store_labels_and_refuses_unknown() -> None:
    task = ClassificationTask(label_values=[1, 2], class_names=["e", "mu"], pairs=[["e", "mu"]])
    assert task.out_dim == 2
    assert task.classes_of(torch.tensor([2, 1, 1])).tolist() == [1, 0, 0]
    with pytest.raises(DataError, match=r"label values \[0\]"):
        task.classes_of(torch.tensor([0, 1]))
    logits = torch.tensor([[10.0, -10.0], [-10.0, 10.0]])
    loss = task.loss(logits, _batch({"labels": torch.tensor([1, 2])}))
    assert loss.item() < 1e-6


def test_energy_task_standardizes_log_energy_and_inverts() -> None:
    task = EnergyTask()
    energies = torch.tensor([[100.0], [1000.0]])
    task.fit([_batch({"energies": energies})])
    mean = (math.log(100) + math.log(1000)) / 2
    assert task.mean.item() == pytest.approx(mean, rel=1e-5)
    standardized = task.standardized(_batch({"energies": energies}))
    assert task.predict(standardized)["energy"].tolist() == pytest.approx([100.0, 1000.0], rel=1e-4)
    metrics = task.make_metrics()
    task.update_metrics(metrics, standardized, _batch({"energies": energies}))
    assert metrics.compute()["resolution"].item() == pytest.approx(0.0, abs=1e-4)


def test_vertex_task_distance_metric() -> None:
    task = VertexTask()
    truth = torch.tensor([[[0.0, 0.0, 0.0]], [[10.0, 0.0, 0.0]]])
    task.fit([_batch({"positions": truth})])
    pred = task.standardized(_batch({"positions": truth})) + torch.tensor([[3.0, 4.0, 0.0]]) / task.std
    metrics = task.make_metrics()
    task.update_metrics(metrics, pred, _batch({"positions": truth}))
    assert metrics.compute()["mean_distance_cm"].item() == pytest.approx(5.0, rel=1e-4)


def test_direction_angles_round_trip_and_convention() -> None:
    d = torch.nn.functional.normalize(torch.randn(50, 3), dim=-1)
    assert torch.allclose(angles_to_direction(direction_to_angles(d)), d, atol=1e-5)
    # straight up the tank axis (y): polar 0; along +z: polar 90 deg, azimuth 90 deg.
    a = direction_to_angles(torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))
    assert a[0, 0].item() == pytest.approx(0.0)
    assert a[1].tolist() == pytest.approx([math.pi / 2, math.pi / 2])


def test_direction_task_angle_metric() -> None:
    task = DirectionTask()
    truth = torch.tensor([[[1.0, 0.0, 0.0]]])
    pred = torch.tensor([[1.0, 1.0, 0.0]])  # 45 degrees away
    metrics = task.make_metrics()
    task.update_metrics(metrics, pred, _batch({"directions": truth}))
    assert metrics.compute()["mean_angle_deg"].item() == pytest.approx(45.0, rel=1e-4)
    assert task.loss(pred, _batch({"directions": truth})).item() == pytest.approx(1 - math.cos(math.pi / 4))


def test_hit_classification_truth_from_parent() -> None:
    task = HitClassificationTask()
    batch = _batch({}, hits={"parent": torch.tensor([-1, 0, 1, -1])})
    assert task.hit_truth(batch).tolist() == [0.0, 1.0, 1.0, 0.0]
    metrics = task.make_metrics()
    task.update_metrics(metrics, torch.tensor([-5.0, 5.0, 5.0, -5.0]), batch)
    values = metrics.compute()
    assert values["auroc"].item() == pytest.approx(1.0)
    assert values["efficiency"].item() == pytest.approx(1.0)


def test_multitask_splits_outputs_and_sums_losses() -> None:
    task = MultiTask({"pid": ClassificationTask(), "direction": DirectionTask()}, weights={"pid": 2.0})
    assert task.out_dim == 6
    batch = _batch({"labels": torch.tensor([0]), "directions": torch.tensor([[[0.0, 1.0, 0.0]]])})
    out = torch.tensor([[0.0, 0.0, 0.0, 0.0, 1.0, 0.0]])
    expected = 2.0 * math.log(3) + 0.0
    assert task.loss(out, batch).item() == pytest.approx(expected, rel=1e-5)
    assert set(task.predict(out)) == {"pid/probabilities", "direction/direction", "direction/angles"}


def test_warmup_cosine_schedule_shape() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = warmup_cosine(opt, total_steps=100, warmup_fraction=0.1, min_factor=0.0)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1)
    assert lrs[9] == pytest.approx(1.0)
    assert lrs[-1] < 0.01
