"""Declared conventions (issue 12): the energy task regresses the configured quantity (kinetic energy,
total energy or momentum), converting the store's declared energy kind with the particle's mass; a
per-event time reference makes a trigger offset harmless; prediction writes an out-of-distribution score
and warns when many events lie outside the training statistics."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from recoml.contracts.batch import HitBatch
from recoml.data.normalization import relative_times
from recoml.data.store import open_store, write_store
from recoml.errors import ConfigError, DataError
from recoml.prediction.run import predict
from recoml.tasks.regression import MASS_BY_LABEL, EnergyTask, convert_energy
from tests.evaluation_helpers import compose_verb

MU = 105.6583755  # MeV, PDG


def test_energy_conversions_by_hand() -> None:
    t = torch.tensor([1000.0, 1000.0], dtype=torch.float64)
    m = torch.tensor([MU, 0.51099895], dtype=torch.float64)
    total = convert_energy(t, m, "kinetic", "total")
    assert total.tolist() == pytest.approx([1105.6583755, 1000.51099895])
    p = convert_energy(t, m, "kinetic", "momentum")
    assert float(p[0]) == pytest.approx(1100.5983604385, rel=1e-12)  # sqrt(T^2 + 2 T m)
    assert convert_energy(p, m, "momentum", "kinetic").tolist() == pytest.approx([1000.0, 1000.0])
    assert convert_energy(total, m, "total", "kinetic").tolist() == pytest.approx([1000.0, 1000.0])
    assert MASS_BY_LABEL[2] == MU


def _batch(energies: list[float], labels: list[int]) -> HitBatch:
    n = len(energies)
    return HitBatch(
        hits={"pmt": torch.zeros(0, dtype=torch.long)},
        offsets=torch.zeros(n + 1, dtype=torch.long),
        targets={"energies": torch.tensor(energies).reshape(n, 1), "labels": torch.tensor(labels)},
        event_index=torch.arange(n),
    )


def test_energy_task_converts_the_stored_kind_to_the_configured_quantity() -> None:
    task = EnergyTask(quantity="kinetic")
    assert task.target_fields == ("energies",)  # same kind: no labels needed
    task.adopt_conventions({"energy_kind": "total"})  # a flattened WCSim file
    assert task.target_fields == ("energies", "labels")
    batch = _batch([1105.6583755, 500.0], [2, 0])
    assert task.target_values(batch).tolist() == pytest.approx([1000.0, 500.0], rel=1e-6)
    assert task.truth(batch)["energy"].tolist() == pytest.approx([1000.0, 500.0], rel=1e-6)
    momentum = EnergyTask(quantity="momentum")
    momentum.adopt_conventions({"energy_kind": "kinetic"})
    assert float(momentum.target_values(_batch([1000.0], [2]))[0]) == pytest.approx(1100.598, rel=1e-5)
    with pytest.raises(DataError, match=r"labels \[-1\] have none"):
        task.target_values(_batch([100.0], [-1]))
    with pytest.raises(ConfigError, match="task.quantity must be one of"):
        EnergyTask(quantity="rest")


def test_relative_times_first_and_median_by_hand() -> None:
    time = torch.tensor([905.0, 901.0, 903.0, 50.0, 52.0])
    offsets = torch.tensor([0, 3, 3, 5])  # events of 3, 0 and 2 hits
    assert relative_times(time, offsets, "first").tolist() == [4.0, 0.0, 2.0, 0.0, 2.0]
    assert relative_times(time, offsets, "median").tolist() == [2.0, -2.0, 0.0, 0.0, 2.0]
    assert relative_times(time, offsets, "none").tolist() == time.tolist()


def _ood_scores(run: Path, ckpt: Path, store: Path) -> np.ndarray:
    overrides = [f"ckpt_path={ckpt}", "dataset=from_file", f"dataset.path={store}", "split=all"]
    with h5py.File(predict(compose_verb("predict", run, overrides))) as f:
        return f["ood_score"][()]


def test_predict_writes_an_ood_score_and_warns_on_a_trigger_offset(
    tmp_path: Path, toy_data: Path, pid_ckpt: Path, caplog
) -> None:
    source = open_store(toy_data / "toy_wcte.h5")
    test = np.load(toy_data / "toy_wcte_splits.npz")["test_idxs"]
    flat, offsets, events = source.read(np.sort(test), None, ["labels", "energies", "positions", "event_ids"])
    arrays = {**flat, **events, "event_hits_index": offsets[:-1]}
    normal = tmp_path / "normal.h5"
    write_store(normal, arrays, attrs={"event_source": source.attrs["event_source"]})
    shifted = tmp_path / "shifted.h5"  # as WCSim digit times: ~900 ns trigger offset, undeclared
    write_store(shifted, {**arrays, "hit_time": arrays["hit_time"] + 900.0}, attrs={"event_source": "other"})
    normal_score = _ood_scores(tmp_path / "a", pid_ckpt, normal)
    assert len(normal_score) == len(test) and 0.2 < np.median(normal_score) < 3.0
    with caplog.at_level(logging.WARNING, logger="recoml.prediction.run"):
        assert np.median(_ood_scores(tmp_path / "b", pid_ckpt, shifted)) > 9.0
    assert "100.0% of the 60 events have an out-of-distribution score above 9" in caplog.text
    assert math.isfinite(float(np.median(normal_score)))
