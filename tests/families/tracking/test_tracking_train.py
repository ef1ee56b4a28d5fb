"""The tracking stages through the trainer (``experiment=tracking/<stage>``), each feeding the next, and
track building + evaluation from the edge classifier's checkpoint alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from recoml import load_model
from recoml.data.store import open_store, write_store
from recoml.errors import ConfigError, DataError, RecomlError
from recoml.families.tracking.pipeline import TrackingPipeline
from recoml.families.tracking.report import evaluate_checkpoint
from recoml.families.tracking.simulation import simulate_tracker_to_store
from recoml.prediction.run import predict
from recoml.training import train
from tests.conftest import CONF_DIR
from tests.evaluation_helpers import compose_verb
from tests.helpers import make_cfg
from tests.hostile_helpers import config_payload, pickle_payload, savetxt

# The fixture store is made here with its own seed and multiplicity: dataset.simulate=null takes it as it is.
TINY_TRACKING = (
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "dataset.batch_size=2",
    "dataset.simulate=null",
)


@pytest.fixture(scope="module")
def tracker_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 small toy tracker events where dataset=toy_tracker looks for them."""
    data = tmp_path_factory.mktemp("tracker_data")
    det = instantiate(OmegaConf.load(CONF_DIR / "detector" / "toy_tracker.yaml"))
    simulate_tracker_to_store(det, data / "toy_toy_tracker.h5", n_events=12, seed=1, n_particles=120)
    return data


@pytest.fixture(scope="module")
def edge_run(tracker_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("edge_run")
    metrics = train(make_cfg(tmp, tracker_data, ["experiment=tracking/edge_classifier", *TINY_TRACKING]))
    for key in (
        "test/efficiency",
        "test/purity",
        "test/auroc",
        "test/graph_efficiency",
        "test/edges_per_event",
    ):
        assert key in metrics
    assert metrics["test/graph_efficiency"] > 0.99  # geometric graphs keep the target edges
    return tmp / "run"


def test_edge_classifier_checkpoint_rebuilds_and_builds_tracks(edge_run: Path, tracker_data: Path) -> None:
    ckpt = edge_run / "checkpoints" / "last.ckpt"
    module = load_model(str(ckpt))
    assert type(module.net).__name__ == "EdgeClassifier"
    assert json.loads((edge_run / "metrics.json").read_text())["test/edges_per_event"] > 0
    out = edge_run / "tracking"
    metrics = evaluate_checkpoint(ckpt, tracker_data / "toy_toy_tracker.h5", out, split="test")
    # One road: the predictions file, then recoml.evaluate's report and plots beside it.
    assert (out / "predictions.h5").is_file() and (out / "evaluation" / "report.md").is_file()
    assert (out / "evaluation" / "plots" / "edge_classification_efficiency_vs_eta.png").is_file()
    assert (
        "efficiency" in metrics["tracks"]["double_majority"] and metrics["edges"]["graph_efficiency"] > 0.99
    )
    assert metrics["n_events"] == 1 and "track_building" in metrics["timing"]
    with pytest.raises(DataError, match="already exists"):
        evaluate_checkpoint(ckpt, tracker_data / "toy_toy_tracker.h5", out, split="test")


def test_metric_learning_feeds_the_edge_classifier(
    tracker_data: Path, edge_run: Path, tmp_path: Path
) -> None:
    stage1 = train(
        make_cfg(tmp_path / "ml", tracker_data, ["experiment=tracking/metric_learning", *TINY_TRACKING])
    )
    assert {"test/graph_efficiency", "test/graph_purity", "test/edges_per_event"} <= set(stage1)
    ckpt = tmp_path / "ml" / "run" / "checkpoints" / "last.ckpt"
    chain = [
        "experiment=tracking/edge_classifier",
        "model.representation.constructor=embedding",
        f"model.representation.constructors.embedding.checkpoint={ckpt}",
        "model.representation.constructors.embedding.k=8",
        "model.representation.constructors.embedding.r=0.05",
        *TINY_TRACKING,
    ]
    stage2 = train(make_cfg(tmp_path / "ec", tracker_data, chain))
    assert "test/auroc" in stage2
    module = load_model(str(tmp_path / "ec" / "run" / "checkpoints" / "last.ckpt"))
    assert type(module.representation.constructor).__name__ == "EmbeddingConstructor"
    # Stages fed the wrong upstream output: an embedding is no edge classifier, and the reverse.
    with pytest.raises(ConfigError, match="edge-classifier checkpoint"):
        TrackingPipeline.from_checkpoint(ckpt)
    wrong = [
        *chain[:2],
        f"model.representation.constructors.embedding.checkpoint={edge_run}/checkpoints/last.ckpt",
    ]
    with pytest.raises(ConfigError, match="metric_learning"):
        train(make_cfg(tmp_path / "bad", tracker_data, [*wrong, *TINY_TRACKING]))
    _hostile_embedding_checkpoints_run_nothing(tmp_path, tracker_data, ckpt, chain, tmp_path / "ec" / "run")


def _hostile_embedding_checkpoints_run_nothing(
    tmp_path: Path, tracker_data: Path, ml_ckpt: Path, chain: list[str], ec_run: Path
) -> None:
    """The metric-learning checkpoint an edge classifier reads while it is built goes through the safe
    loader: in training and when the edge classifier is loaded; ``trust`` from the command line reaches it."""
    marker = tmp_path / "ran"
    pickled = pickle_payload(ml_ckpt, tmp_path / "evil_ml.ckpt", marker)
    payload = config_payload(ml_ckpt, tmp_path / "cfg_ml.ckpt", "task.label_smoothing", savetxt(marker))
    for bad, error in ((pickled, "refused: the checkpoint holds Python objects"), (payload, "numpy.savetxt")):
        stage = [*chain[:2], f"model.representation.constructors.embedding.checkpoint={bad}"]
        with pytest.raises(RecomlError, match=error):
            train(make_cfg(tmp_path / f"t_{bad.stem}", tracker_data, [*stage, *chain[3:]]))
    # An edge classifier whose stored config points its embedding at a hostile file.
    ec = ec_run / "checkpoints" / "last.ckpt"
    place = "model.representation.constructors.embedding.checkpoint"
    for bad, error in ((pickled, "refused: the checkpoint holds Python objects"), (payload, "numpy.savetxt")):
        pointing = config_payload(ec, tmp_path / f"ec_to_{bad.stem}.ckpt", place, str(bad))
        with pytest.raises(RecomlError, match=error):
            load_model(str(pointing))
        with pytest.raises(RecomlError, match=error):
            evaluate_checkpoint(pointing, tracker_data / "toy_toy_tracker.h5", tmp_path / "report")
    assert not marker.exists() and not (tmp_path / "report").exists()
    # A target the user trusts, named by the embedding's checkpoint: refused unless trust= names it.
    plugin = config_payload(
        ml_ckpt, tmp_path / "plugin_ml.ckpt", "metrics.unused", {"_target_": "collections.OrderedDict"}
    )
    ec_plugin = config_payload(ec, tmp_path / "ec_plugin.ckpt", place, str(plugin))
    with pytest.raises(ConfigError, match=r"plugin_ml.ckpt: refused to build 'collections.OrderedDict'"):
        load_model(str(ec_plugin))
    assert load_model(str(ec_plugin), trust=["collections.OrderedDict"]).fitted
    run = predict(
        compose_verb(
            "predict",
            tmp_path / "pred",
            [f"ckpt_path={ec_plugin}", "trust=[collections.OrderedDict]", "batch_size=1"],
        )
    )
    assert run.is_file()
    stage = [*chain[:2], f"model.representation.constructors.embedding.checkpoint={plugin}"]
    with pytest.raises(ConfigError, match="collections.OrderedDict"):
        train(make_cfg(tmp_path / "t_plugin", tracker_data, [*stage, *chain[3:]]))


@pytest.mark.parametrize("payload", ["pickle", "config"])
def test_hostile_edge_classifier_checkpoint_runs_nothing_in_the_tracking_pipeline(
    edge_run: Path, tracker_data: Path, tmp_path: Path, payload: str
) -> None:
    """TrackingPipeline.from_checkpoint and evaluate_checkpoint read through the safe loader: a pickle
    payload or a config ``_target_`` payload is one sentence and the marker it would write never appears."""
    ckpt = edge_run / "checkpoints" / "last.ckpt"
    marker = tmp_path / "ran"
    if payload == "pickle":
        bad = pickle_payload(ckpt, tmp_path / "evil.ckpt", marker)
        error: type[RecomlError] = DataError
        match = r"evil.ckpt: refused: the checkpoint holds Python objects other than tensors"
    else:
        bad = config_payload(ckpt, tmp_path / "evil.ckpt", "task.label_smoothing", savetxt(marker))
        error, match = ConfigError, r"evil.ckpt: refused to build 'numpy.savetxt'"
    with pytest.raises(error, match=match):
        TrackingPipeline.from_checkpoint(bad)
    with pytest.raises(error, match=match):
        evaluate_checkpoint(bad, tracker_data / "toy_toy_tracker.h5", tmp_path / "report")
    assert not marker.exists() and not (tmp_path / "report").exists()


def test_the_tracking_pipeline_builds_a_trusted_target_only_when_told(
    edge_run: Path, tracker_data: Path, tmp_path: Path
) -> None:
    ckpt = config_payload(
        edge_run / "checkpoints" / "last.ckpt",
        tmp_path / "plugin.ckpt",
        "metrics.unused",
        {"_target_": "collections.OrderedDict"},
    )
    with pytest.raises(ConfigError, match=r"pass trust=\[collections.OrderedDict\]"):
        TrackingPipeline.from_checkpoint(ckpt)
    metrics = evaluate_checkpoint(
        ckpt, tracker_data / "toy_toy_tracker.h5", tmp_path / "report", trust=["collections.OrderedDict"]
    )
    assert metrics["n_events"] == 1


def test_lightnings_load_from_checkpoint_is_the_safe_loader(edge_run: Path, tmp_path: Path) -> None:
    """Lightning's ``RecoModule.load_from_checkpoint`` would build the stored config unchecked."""
    from recoml.tasks.module import RecoModule

    marker = tmp_path / "ran"
    ckpt = edge_run / "checkpoints" / "last.ckpt"
    bad = config_payload(ckpt, tmp_path / "evil.ckpt", "task.label_smoothing", savetxt(marker))
    with pytest.raises(ConfigError, match="refused to build 'numpy.savetxt'"):
        RecoModule.load_from_checkpoint(bad)
    assert not marker.exists()
    assert type(RecoModule.load_from_checkpoint(ckpt).net).__name__ == "EdgeClassifier"


def test_hit_classification_on_tracker_events(tracker_data: Path, tmp_path: Path) -> None:
    metrics = train(
        make_cfg(tmp_path, tracker_data, ["experiment=tracking/hit_classification", *TINY_TRACKING])
    )
    assert {"test/auroc", "test/efficiency", "test/purity"} <= set(metrics)


def test_store_without_truth_cannot_train(tracker_data: Path, tmp_path: Path) -> None:
    store = open_store(tracker_data / "toy_toy_tracker.h5")
    keep = [f for f in store.fields if f not in ("hit_particle_id", "hit_tpx", "hit_tpy", "hit_tpz")]
    data = tmp_path / "data"
    write_store(data / "toy_toy_tracker.h5", {f: np.asarray(store.array(f)) for f in keep})
    with pytest.raises(DataError, match="hit_particle_id"):
        train(make_cfg(tmp_path, data, ["experiment=tracking/edge_classifier", *TINY_TRACKING]))
