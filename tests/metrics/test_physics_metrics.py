"""The metric definitions of recoml.metrics.physics against hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchmetrics.functional.classification import binary_auroc

from recoml.metrics import physics as pm

SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
SIGNAL = np.array([1, 1, 0, 1, 0, 0], dtype=bool)


def test_roc_curve_and_auc_of_a_tiny_example() -> None:
    fpr, tpr, thr = pm.roc_curve(SCORES, SIGNAL)
    # cut >= 0.9: 1 of 3 signals, 0 of 3 backgrounds; >= 0.7: 2/3 and 1/3 ...
    assert np.allclose(fpr, [0, 0, 0, 1 / 3, 1 / 3, 2 / 3, 1])
    assert np.allclose(tpr, [0, 1 / 3, 2 / 3, 2 / 3, 1, 1, 1])
    assert np.allclose(thr[1:], SCORES) and thr[0] == np.inf
    # AUC = P(signal scores above background): 0.9 and 0.8 beat 3 each, 0.6 beats 2 -> 8 / 9
    assert pm.roc_auc(SCORES, SIGNAL) == pytest.approx(8 / 9)


def test_auc_counts_ties_as_one_half_and_agrees_with_torchmetrics() -> None:
    assert pm.roc_auc([0.5, 0.5], [1, 0]) == pytest.approx(0.5)
    assert pm.roc_auc([0.5, 0.5, 0.9], [1, 0, 1]) == pytest.approx(0.75)
    rng = np.random.default_rng(3)
    labels = rng.random(2000) < 0.4
    scores = np.round(rng.normal(size=2000) + labels, 2)  # many ties
    expected = float(binary_auroc(torch.tensor(scores), torch.tensor(labels.astype(int))))
    assert pm.roc_auc(scores, labels) == pytest.approx(expected, abs=1e-6)


def test_empty_class_gives_nan_auc() -> None:
    assert np.isnan(pm.roc_auc([0.1, 0.2], [1, 1]))


def test_rejection_at_fixed_signal_efficiency() -> None:
    signal = np.round(np.arange(1, 11) / 10, 2)  # 0.1 ... 1.0
    background = np.array([0.05, 0.15, 0.25, 0.95])
    scores = np.r_[signal, background]
    is_signal = np.r_[np.ones(10, bool), np.zeros(4, bool)]
    # 90% of 10 signals -> keep the 9 highest: cut at 0.2; backgrounds 0.25 and 0.95 pass -> 1/2
    r90 = pm.rejection_at_efficiency(scores, is_signal, 0.9)
    assert r90["threshold"] == pytest.approx(0.2)
    assert r90["signal_efficiency"] == pytest.approx(0.9)
    assert r90["background_efficiency"] == pytest.approx(0.5) and r90["rejection"] == pytest.approx(2.0)
    # 50% -> cut at 0.6: only 0.95 passes -> rejection 4
    assert pm.rejection_at_efficiency(scores, is_signal, 0.5)["rejection"] == pytest.approx(4.0)
    # 10% -> cut at 1.0: no background passes. Lower limit from the Wilson upper bound for 0 of 4 (z = 1):
    # (0 + 1/2) / 5 + 1/5 * sqrt(1/4) = 0.2 -> rejection > 5 = N + 1, printed as such, never inf
    limit = pm.rejection_at_efficiency(scores, is_signal, 0.1)["rejection"]
    assert isinstance(limit, pm.LowerLimit) and limit == pytest.approx(5.0) and str(limit) == "> 5"
    assert pm.threshold_at_efficiency(signal, 0.95) == pytest.approx(0.1)  # ceil(9.5) = 10th highest
    with pytest.raises(ValueError):
        pm.threshold_at_efficiency(signal, 0.0)


def test_pair_discriminant_ignores_other_classes() -> None:
    probs = np.array([[0.2, 0.6, 0.2], [0.9, 0.05, 0.05], [1.0, 0.0, 0.0]])
    assert np.allclose(pm.pair_discriminant(probs, 1, 2), [0.75, 0.5, 0.5])


def test_confusion_matrix_rows_are_true_classes() -> None:
    true = np.array([0, 0, 1, 1, 1, 2])
    pred = np.array([0, 1, 1, 1, 2, 2])
    counts = pm.confusion_matrix(true, pred, 3, normalize=False)
    assert counts.tolist() == [[1, 1, 0], [0, 2, 1], [0, 0, 1]]
    norm = pm.confusion_matrix(true, pred, 3)
    assert np.allclose(norm, [[0.5, 0.5, 0], [0, 2 / 3, 1 / 3], [0, 0, 1]])
    assert np.allclose(pm.confusion_matrix([0], [0], 2), [[1, 0], [0, 0]])  # empty class row stays 0


def test_efficiency_and_purity_at_a_cut() -> None:
    r = pm.efficiency_purity(SCORES, SIGNAL, 0.65)  # selected: .9 .8 .7 -> TP 2, FP 1, FN 1, TN 2
    assert (r["tp"], r["fp"], r["fn"], r["tn"]) == (2, 1, 1, 2)
    assert r["efficiency"] == pytest.approx(2 / 3) and r["purity"] == pytest.approx(2 / 3)
    assert r["accuracy"] == pytest.approx(4 / 6)


def test_resolution_is_the_68_percent_quantile_of_the_absolute_residual() -> None:
    values = np.arange(1, 101, dtype=float) * np.where(np.arange(100) % 2, 1, -1)  # signs do not matter
    assert pm.resolution(values) == pytest.approx(1 + 0.68 * 99)
    gauss = np.random.default_rng(0).normal(0.0, 2.0, 400_000)
    # For a centred Gaussian the 68% quantile of |x| is 0.9945 sigma.
    assert pm.resolution(gauss) == pytest.approx(2.0 * 0.99446, rel=5e-3)
    assert pm.bias([1.0, 2.0, 6.0]) == pytest.approx(3.0)
    assert np.isnan(pm.resolution([]))
    # distribution-free error: order statistics at ranks 68 -+ sqrt(100 * 0.68 * 0.32) = 63 and 73
    assert pm.quantile_error(np.arange(1, 101)) == pytest.approx((74 - 64) / 2)


def test_binned_resolution_and_bias() -> None:
    x = np.array([0.5, 0.5, 0.5, 1.5, 1.5, 5.0])
    residual = np.array([1.0, -1.0, 3.0, 2.0, 2.0, 9.0])
    out = pm.binned_resolution(x, residual, [0, 1, 2])
    assert out["count"].tolist() == [3, 2]  # 5.0 is outside
    assert out["resolution"][0] == pytest.approx(np.quantile([1, 1, 3], 0.68))
    assert out["bias"].tolist() == pytest.approx([1.0, 2.0])
    assert out["centers"].tolist() == [0.5, 1.5]


def test_binned_efficiency_with_wilson_interval() -> None:
    x = np.array([0.1, 0.2, 0.3, 0.4, 1.1, 1.2, 1.3, 1.4, 2.0])
    passed = np.array([1, 1, 1, 1, 1, 0, 1, 0, 1], dtype=bool)
    out = pm.binned_efficiency(x, passed, [0, 1, 2])
    assert out["efficiency"].tolist() == pytest.approx([1.0, 0.6])  # x = 2.0 (last edge) is inside: 3 of 5
    # k = n = 4, z = 1: centre (4 + 0.5) / 5 = 0.9, half width sqrt(0 + 0.25) / 5 = 0.1
    assert out["low"][0] == pytest.approx(0.8) and out["high"][0] == pytest.approx(1.0)
    lo, hi = pm.wilson_interval(np.array([2]), np.array([4]))
    assert lo[0] == pytest.approx(0.5 - 0.2 * np.sqrt(1.25)) and hi[0] == pytest.approx(
        0.5 + 0.2 * np.sqrt(1.25)
    )


def test_angle_between_vectors() -> None:
    a = np.array([[1, 0, 0], [1, 0, 0], [2, 0, 0], [1, 0, 0], [0, 0, 3]], dtype=float)
    b = np.array([[0, 1, 0], [1, 1, 0], [-5, 0, 0], [1, 1e-7, 0], [0, 0, 1]], dtype=float)
    angle = pm.angle_between(a, b)
    assert angle[:3] == pytest.approx([90.0, 45.0, 180.0])
    assert angle[3] == pytest.approx(np.degrees(1e-7), rel=1e-6)  # arccos of a dot product would give 0
    assert angle[4] == pytest.approx(0.0, abs=1e-12)


def test_vertex_residuals_along_and_across_the_direction() -> None:
    r = pm.vertex_residuals([[10.0, 5.0, 0.0]], [[0.0, 0.0, 0.0]], [[2.0, 0.0, 0.0]])
    assert r["longitudinal"][0] == pytest.approx(10.0)
    assert r["transverse"][0] == pytest.approx(5.0)
    assert r["total"][0] == pytest.approx(np.sqrt(125.0))
    assert pm.fractional_residual([110.0, 90.0], [100.0, 100.0]) == pytest.approx([0.1, -0.1])


def test_distances_to_the_wall_of_a_cylinder() -> None:
    v = np.array([[0, 0, 0], [90, 0, 0], [0, 45, 0], [110, 0, 0]], dtype=float)
    assert pm.distance_to_wall(v, 100.0, 50.0).tolist() == pytest.approx([50, 10, 5, -10])
    o = np.zeros((3, 3))
    d = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0]], dtype=float)
    assert pm.towall(o, d, 100.0, 50.0) == pytest.approx([100.0, 50.0, 50 * np.sqrt(2)])
    assert pm.towall([[50.0, 0, 0]], [[-1.0, 0, 0]], 100.0, 50.0)[0] == pytest.approx(150.0)
    assert pm.towall([[150.0, 0, 0]], [[-1.0, 0, 0]], 100.0, 50.0)[0] == 0.0  # outside
