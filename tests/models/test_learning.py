"""Models that "train" must learn: loss falls, accuracy beats chance, regression beats a constant."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from recoml.data.store import open_store
from recoml.training import train
from tests.helpers import CONF_DIR, make_cfg, toy_store_dir

FAST = [
    "trainer.limit_train_batches=null",
    "trainer.limit_val_batches=null",
    "trainer.limit_test_batches=null",
    "callbacks.early_stopping=null",
    "dataset.batch_size=32",
    "scheduler=none",
    "dataset.simulate=null",  # each test brings its own store (other seeds, particles or physics)
]


def _losses(run: Path) -> list[float]:
    import csv

    rows = list(csv.DictReader(open(run / "csv" / "metrics.csv")))
    return [float(r["train/loss"]) for r in rows if r.get("train/loss")]


def _pid(tmp_path: Path, data: Path, model: list[str], epochs: int) -> dict[str, float]:
    cfg = make_cfg(
        tmp_path,
        data,
        [*FAST, f"trainer.max_epochs={epochs}", "trainer.log_every_n_steps=1", "task.pairs=[[e,mu]]", *model],
    )
    metrics = train(cfg)
    losses = _losses(tmp_path / "run")
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:3]), losses  # the loss falls clearly
    return metrics


@pytest.fixture(scope="session")
def pid_events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1,500 toy WCTE events (gamma, e, mu): on the issue-13 toy (sharp-edged electron rings, muon
    scattering and delta rays, Rayleigh-scattered light) 480 training events overfit before e and mu
    separate (best validation loss at epoch 2, 3-class test accuracy 0.43); more events, fewer epochs."""
    return toy_store_dir(tmp_path_factory.mktemp("pid"), n_events=1500, seed=1)  # thresholds measured on it


def test_cnn_learns_particle_id(tmp_path: Path, pid_events: Path) -> None:
    metrics = _pid(tmp_path, pid_events, ["model.net.width=16", "optimizer.lr=3e-3"], epochs=4)
    # Measured on the issue-13 toy: 3-class 0.49, e/mu 0.84 (the full `make train`: 0.66 / 0.96). Four
    # epochs on 1,500 events are sensitive to the photon-level random draws: the same physics drawn in
    # another order (the simulation's block size) gave 3-class 0.49-0.57 on this seed, 0.41-0.57 on others.
    assert metrics["test/acc"] > 0.45  # chance is 1/3 for gamma/e/mu (0.45 is 4 sigma above on 300 events)
    assert metrics["test/acc_e_mu"] > 0.8  # chance is 1/2


@pytest.fixture(scope="session")
def pid_events_direct(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same 1,500 events without reflected light: in WCTE (22 % of the wall collects light) reflection
    adds ~55 % more hits, nearly all single-p.e. hits spread over the tank, and a 3-epoch GNN on 1,200
    events no longer learns through them (measured: 3-class 0.40, loss 1.10 -> 1.00); the CNN does (test
    above). The GNN learns on the full toy with more events and epochs (`model=gnn` defaults)."""
    return toy_store_dir(
        tmp_path_factory.mktemp("pid_direct"),
        n_events=1500,
        physics=(("pmt_reflectivity", 0.0), ("wall_reflectivity", 0.0)),
        seed=1,
    )


def test_gnn_learns_particle_id(tmp_path: Path, pid_events_direct: Path) -> None:
    metrics = _pid(
        tmp_path, pid_events_direct, ["model=gnn", "model.net.hidden=32", "optimizer.lr=3e-3"], epochs=3
    )
    # Measured on the issue-13 toy: 3-class 0.65, e/mu 0.92.
    assert metrics["test/acc"] > 0.45
    assert metrics["test/acc_e_mu"] > 0.75


@pytest.fixture(scope="session")
def electrons(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1,500 toy WCTE electrons: regression needs more events than PID, and one particle type keeps the
    charge-energy relation tight enough to learn in a few CPU epochs."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from recoml.families.water_cherenkov.to_store import simulate_to_store

    data_dir = tmp_path_factory.mktemp("electrons")
    det = instantiate(OmegaConf.load(CONF_DIR / "detector" / "wcte.yaml"))
    simulate_to_store(det, data_dir / "toy_wcte.h5", n_events=1500, seed=3, particles=["e-"])
    return data_dir


def _split_truth(data: Path, field: str) -> tuple[np.ndarray, np.ndarray]:
    """``field`` of the training and the test split, one row per event."""
    from recoml.data.splits import load_splits

    store = open_store(data / "toy_wcte.h5")
    splits = load_splits(data / "toy_wcte_splits.npz", store.n_events)
    values = store.read(np.arange(store.n_events), hit_fields=(), event_fields=[field])[2][field]
    values = values.reshape(store.n_events, -1)
    return values[splits["train_idxs"]], values[splits["test_idxs"]]


def test_energy_regression_beats_a_constant(tmp_path: Path, electrons: Path) -> None:
    cfg = make_cfg(
        tmp_path,
        electrons,
        [*FAST, "task=energy", "trainer.max_epochs=6", "model.net.width=16", "optimizer.lr=2e-3"],
    )
    metrics = train(cfg)
    train_e, test_e = _split_truth(electrons, "energies")
    constant = np.exp(np.log(train_e).mean())  # the best constant in log(E)
    constant_resolution = np.quantile(np.abs(constant - test_e) / test_e, 0.68)
    # Measured: 0.31 against 0.51 for the constant.
    assert metrics["test/resolution"] < 0.8 * constant_resolution


def test_vertex_regression_beats_a_constant(tmp_path: Path, electrons: Path) -> None:
    cfg = make_cfg(
        tmp_path,
        electrons,
        [
            *FAST,
            "task=vertex",
            "trainer.max_epochs=12",
            "model.net.width=16",
            "optimizer.lr=2e-3",
            "model.representation.geometry_channels=true",
            "model.net.circular_padding=false",
        ],
    )
    metrics = train(cfg)
    train_v, test_v = _split_truth(electrons, "positions")
    constant_resolution = np.quantile(np.linalg.norm(test_v - train_v.mean(0), axis=1), 0.68)
    # Measured on the issue-13 toy: 89 cm (12 epochs; 92 cm after 6) against 106 cm for the constant. Hit
    # times are relative to the trigger, so the vertex time is unknown and the vertex is no longer read off
    # the times (issue 13, item 5): on the earlier toy (times from the vertex at t = 0) it reached 54 cm and
    # this bound was 0.75. The point-source time-of-flight fit, which fits the vertex time too, gets 57 cm
    # on toy WCTE electrons (docs/physics.md): the CNN is above chance, not yet at the classical baseline.
    assert metrics["test/resolution_cm"] < 0.9 * constant_resolution


def test_direction_regression_beats_isotropic_guess(tmp_path: Path, electrons: Path) -> None:
    cfg = make_cfg(
        tmp_path,
        electrons,
        [*FAST, "task=direction", "trainer.max_epochs=6", "model.net.width=16", "optimizer.lr=2e-3"],
    )
    metrics = train(cfg)
    # A constant guess on isotropic directions has a median angle of 90 degrees and a 68% quantile ~ 111.
    assert metrics["test/resolution_deg"] < 80.0
