"""Classical baselines (docs/physics.md, issue 13 item 5): hand-computed direction, energy and e/mu fits,
and a predictions file that `recoml evaluate` scores next to a network's on the same events."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from omegaconf import OmegaConf

from recoml.conf import CONF_DIR
from recoml.errors import DataError
from recoml.families.water_cherenkov.baselines import (
    charge_direction,
    event_features,
    fit_charge_energy,
    fit_discriminant,
    write_classical_predictions,
)
from recoml.families.water_cherenkov.simulation import C_LIGHT
from recoml.families.water_cherenkov.validation import tof_vertex_fit
from recoml.prediction.reader import Predictions
from tests.evaluation_helpers import store_predictions
from tests.helpers import toy_store_dir


def test_charge_direction_hand_computed() -> None:
    # Unit vectors from (1, 2, 3) to the PMTs: +x (charge 3) and +y (charge 1): sum (3, 1, 0) / sqrt(10).
    vertex = np.array([1.0, 2.0, 3.0])
    pmts = vertex + np.array([[100.0, 0.0, 0.0], [0.0, 50.0, 0.0]])
    got = charge_direction(pmts, np.array([3.0, 1.0]), vertex)
    np.testing.assert_allclose(got, np.array([3.0, 1.0, 0.0]) / np.sqrt(10.0), atol=1e-12)


def test_charge_direction_of_a_ring_is_its_axis() -> None:
    # Eight PMTs on a 41 deg cone about (0, 0, -1), at different distances: the axis comes back exactly.
    theta, phi = np.radians(41.0), np.linspace(0, 2 * np.pi, 8, endpoint=False)
    cone = np.stack(
        [np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), -np.cos(theta) * np.ones(8)], 1
    )
    vertex = np.array([10.0, -20.0, 5.0])
    pmts = vertex + cone * np.linspace(100, 300, 8)[:, None]
    np.testing.assert_allclose(charge_direction(pmts, np.ones(8), vertex), [0.0, 0.0, -1.0], atol=1e-12)


def test_charge_direction_refuses_no_charge() -> None:
    with pytest.raises(DataError, match="sum to zero"):
        charge_direction(np.array([[1.0, 0, 0]]), np.array([0.0]), np.zeros(3))


def test_fit_discriminant_hand_computed() -> None:
    # Signal {1, 3} (mean 2), background {5, 7} (mean 6), pooled variance (1+1+1+1) / (4-2) = 2:
    # w = (2 - 6) / 2 = -2, c = 2 * (2 + 6) / 2 = 8; P = 1/2 half-way at x = 4.
    w, c = fit_discriminant(np.array([1.0, 3.0, 5.0, 7.0]), np.array([True, True, False, False]))
    assert (w, c) == pytest.approx((-2.0, 8.0))
    with pytest.raises(DataError, match="at least 2"):
        fit_discriminant(np.array([1.0, 2.0, 3.0]), np.array([True, False, False]))


def test_fit_charge_energy_per_label() -> None:
    charge = np.array([1.0, 2.0, 3.0, 1.0, 2.0])
    labels = np.array([1, 1, 1, 2, 2])
    energy = np.where(labels == 1, 10 * charge + 5, 4 * charge - 1)
    fits = fit_charge_energy(charge, energy, labels)
    assert fits[1] == pytest.approx((10.0, 5.0)) and fits[2] == pytest.approx((4.0, -1.0))
    with pytest.raises(DataError, match="label 0 has 1 events"):
        fit_charge_energy(np.array([1.0]), np.array([1.0]), np.array([0]))


def test_event_features_recover_a_point_source_ring() -> None:
    # Hits evenly around a 41 deg cone about +x from vertex v at exact group-velocity times after
    # t0 = -7 ns, plus two late hits off the ring (outside the prompt window): vertex, time and
    # direction come back.
    rng = np.random.default_rng(0)
    vertex, t0, n_g = np.array([20.0, -30.0, 10.0]), -7.0, 1.38
    theta, phi = np.radians(41.0), np.linspace(0, 2 * np.pi, 60, endpoint=False)
    cone = np.stack(
        [np.cos(theta) * np.ones(60), np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi)], 1
    )
    pmts = vertex + cone * rng.uniform(100, 250, (60, 1))
    late = vertex + np.array([[-150.0, 0.0, 0.0], [0.0, 0.0, -150.0]])
    pos = np.vstack([pmts, late])
    times = t0 + np.linalg.norm(pos - vertex, axis=1) * n_g / C_LIGHT
    times[-2:] += 40.0
    fit = event_features(pos, times, np.ones(len(pos)), group_index=n_g)
    np.testing.assert_allclose(fit["vertex"], vertex, atol=0.5)
    assert fit["vertex_time"] == pytest.approx(t0, abs=0.05)
    np.testing.assert_allclose(fit["direction"], [1.0, 0.0, 0.0], atol=0.01)
    assert fit["charge"] == 62.0 and fit["off_ring_fraction"] == 0.0


def test_tof_vertex_fit_stays_in_bounds() -> None:
    # A point source at x = 80 cm; a box ending at x = 50 cm puts the fitted vertex on that face.
    rng = np.random.default_rng(1)
    pmts = rng.normal(size=(200, 3))
    pmts = 150 * pmts / np.linalg.norm(pmts, axis=1, keepdims=True)
    vertex = np.array([80.0, 0.0, 0.0])
    times = np.linalg.norm(pmts - vertex, axis=1) * 1.38 / C_LIGHT
    free, _ = tof_vertex_fit(pmts, times, np.ones(200))
    np.testing.assert_allclose(free, vertex, atol=0.5)
    boxed, _ = tof_vertex_fit(pmts, times, np.ones(200), bounds=(np.full(3, -50.0), np.full(3, 50.0)))
    assert boxed[0] == pytest.approx(50.0)


def test_classical_predictions_scored_next_to_a_network(tmp_path, tmp_path_factory) -> None:
    data = toy_store_dir(tmp_path_factory.getbasetemp()) / "toy_wcte.h5"
    rows = np.arange(570, 600, dtype=np.int64)
    ref = store_predictions(tmp_path / "reference.h5", data, rows)
    out = write_classical_predictions(ref, tmp_path / "classical.h5", n_calibration=80)
    oracle = write_classical_predictions(ref, tmp_path / "oracle.h5", n_calibration=80, true_vertex=True)
    classical = Predictions(out)
    assert [s["kind"] for s in classical.sections] == ["energy", "vertex", "direction", "classification"]
    assert [s["kind"] for s in Predictions(oracle).sections] == ["energy", "direction", "classification"]
    assert classical.attrs["events_digest"] == "rows-570-599"
    radius = float(OmegaConf.load(CONF_DIR / "detector" / "wcte.yaml")["radius"])
    with h5py.File(out) as f:
        np.testing.assert_array_equal(f["event_index"][()], rows)
        probs = f["pred_pid.probabilities"][()]
        np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-6)
        assert np.all(probs[:, 0] == 0)  # no gamma hypothesis
        vertex = f["pred_vertex.position"][()]
    assert np.all(np.abs(vertex[:, [0, 2]]) <= radius + 1e-3)  # the fit stays in the tank (bounds)
    # (recoml evaluate on these files: tests/test_resolution_table_script.py)
    fitted, from_truth = (np.quantile(_angle_deg(p), 0.68) for p in (out, oracle))
    # From the true vertex the ring's axis is within ~10 deg (68%); the fitted vertex is worse.
    assert 0 < from_truth < 20 and from_truth < fitted
    with h5py.File(out) as f:
        frac = f["pred_energy.energy"][()] / f["true_energy.energy"][()] - 1
    assert 0 < np.quantile(np.abs(frac), 0.68) < 1  # charge-sum energy: a real, calibrated estimate


def _angle_deg(path: Path) -> np.ndarray:
    with h5py.File(path) as f:
        cos = np.sum(f["pred_direction.direction"][()] * f["true_direction.direction"][()], axis=1)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def test_classical_predictions_need_calibration_events(tmp_path, tmp_path_factory) -> None:
    data = toy_store_dir(tmp_path_factory.getbasetemp()) / "toy_wcte.h5"
    ref = store_predictions(tmp_path / "reference.h5", data, np.arange(600, dtype=np.int64))
    with pytest.raises(DataError, match="outside the predicted ones"):
        write_classical_predictions(ref, tmp_path / "classical.h5")
