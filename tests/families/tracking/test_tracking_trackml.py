"""The real TrackML event end to end: converted, graphs built on the real geometry, edges classified by a
model trained on toy events simulated on that geometry, tracks built, metrics and plots reported."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from recoml.conversion.mapping import parse_mapping
from recoml.data.store import open_store
from recoml.errors import DataError
from recoml.families.tracking.conversion import convert_trackml
from recoml.families.tracking.detector import load_trackml_detector
from recoml.families.tracking.report import evaluate_checkpoint
from recoml.families.tracking.simulation import simulate_tracker_to_store
from recoml.training import train
from tests.conftest import CONF_DIR
from tests.helpers import make_cfg


def convert(directory: Path, output: Path) -> Path:
    mapping = parse_mapping(OmegaConf.load(CONF_DIR / "convert" / "trackml.yaml"))
    return convert_trackml(directory, output, mapping, hash_inputs=False, progress=False)


def test_trackml_event_runs_end_to_end(real_data: Path, tmp_path: Path) -> None:
    real = convert(real_data / "trackml", tmp_path / "trackml.h5")
    assert open_store(real).n_events == 1
    # Train on toy events simulated on the real geometry (dataset=toy_tracker follows detector=trackml).
    det = load_trackml_detector(real_data / "trackml" / "detectors.csv.gz")
    data = tmp_path / "data"
    simulate_tracker_to_store(det, data / "toy_trackml.h5", n_events=10, seed=2, n_particles=150)
    overrides = [
        "experiment=tracking/edge_classifier",
        "detector=trackml",
        f"detector.path={real_data / 'trackml' / 'detectors.csv.gz'}",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "dataset.simulate=null",  # the store made above (10 events of 150 particles)
    ]
    train(make_cfg(tmp_path, data, overrides))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    out = tmp_path / "report"
    metrics = evaluate_checkpoint(ckpt, real, out, split="all", method="walkthrough")
    assert metrics["n_events"] == 1 and metrics["hits_per_event"] == 5527
    # The geometric graph keeps the real event's pT > 1 GeV edges (missing hits aside).
    assert metrics["edges"]["graph_efficiency"] > 0.97
    assert metrics["tracks"]["n_target_particles"] > 40
    for style in ("double_majority", "atlas"):
        assert 0.0 <= metrics["tracks"][style]["efficiency"] <= 1.0
    assert (out / "evaluation" / "report.md").is_file()
    assert (out / "evaluation" / "plots" / "edge_classification_efficiency_vs_pt.png").is_file()


def test_trackml_file_with_a_missing_column_is_named(real_data: Path, tmp_path: Path) -> None:
    src = real_data / "trackml"
    for f in src.iterdir():
        shutil.copy(f, tmp_path / f.name)
    hits = tmp_path / "event000000001-hits.csv.gz"
    with gzip.open(hits, "rt") as fh:
        lines = [",".join(line.rstrip("\n").split(",")[:-1]) for line in fh]  # drop module_id
    with gzip.open(hits, "wt") as fh:
        fh.write("\n".join(lines) + "\n")
    with pytest.raises(DataError, match="module_id"):
        convert(tmp_path, tmp_path / "out.h5")


#: docs/tracking.md's recipe (toy events of ~10k hits on the real geometry), reduced to fit a slow test: 40
#: events instead of 60 and 6 epochs instead of 8.
RECIPE = (
    "experiment=tracking/edge_classifier",
    "detector=trackml",
    "dataset.simulate.n_particles=700",
    "model.net.hidden=32",
    "model.net.n_iterations=6",
    "optimizer.lr=3e-3",
    "task.pos_weight=2",
    "dataset.batch_size=1",
    "dataset.eval_batch_size=1",
    "trainer.limit_train_batches=1.0",
    "trainer.limit_val_batches=1.0",
    "trainer.limit_test_batches=1.0",
)


@pytest.mark.slow
def test_edge_classifier_trained_on_the_toy_meets_the_real_event_at_its_trained_cut(
    real_data: Path, tmp_path: Path
) -> None:
    """Issue 13: trained on toy events (multiple scattering, double hits, noise, secondaries) simulated on the
    real TrackML geometry, applied to the real event at the trained score cut (0.5, not re-tuned), the edge
    classifier keeps >= 90 % of the target edges at >= 90 % purity."""
    real = convert(real_data / "trackml", tmp_path / "trackml.h5")
    overrides = [
        *RECIPE,
        f"detector.path={real_data / 'trackml' / 'detectors.csv.gz'}",
        "dataset.simulate.n_events=40",
        "trainer.max_epochs=6",
    ]
    train(make_cfg(tmp_path, tmp_path / "data", overrides))
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    metrics = evaluate_checkpoint(ckpt, real, tmp_path / "report", split="all")
    assert metrics["score_cut"] == 0.5
    edges = metrics["edges"]
    figures = {k: round(edges[k], 4) for k in ("efficiency", "purity", "auroc")}
    assert edges["efficiency"] >= 0.9 and edges["purity"] >= 0.9, figures
