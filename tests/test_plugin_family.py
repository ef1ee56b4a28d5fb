"""A detector family and a task that live only in the tests (tests/plugin_family.py) plug in through the
contracts and YAML in a user config directory: simulate, train, predict and evaluate without an edit to
recoml. This is the extension promise of docs/architecture.md."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from recoml.contracts import Detector, Task, simulator_of
from recoml.data.identity import detector_fingerprint
from recoml.data.store import open_store
from recoml.evaluation import evaluate_files
from recoml.prediction.run import predict
from recoml.training import train
from tests.evaluation_helpers import compose_verb
from tests.helpers import make_cfg
from tests.plugin_family import PanelDetector

DETECTOR_YAML = "_target_: tests.plugin_family.PanelDetector\nname: panel\nn_side: 12\n"
TASK_YAML = "_target_: tests.plugin_family.SpreadTask\nname: spread\nmonitor: val/acc\nmonitor_mode: max\n"
DATASET_YAML = """_target_: recoml.data.datamodule.EventDataModule
name: toy_panel
path: ${paths.data_dir}/toy_panel.h5
split_path: null
fractions: [0.8, 0.1, 0.1]
split_seed: 0
batch_size: 64
eval_batch_size: 256
num_workers: 0
pin_memory: false
in_memory: true
simulate:
  n_events: 1500
  seed: 0
"""


@pytest.fixture
def user_conf(tmp_path: Path) -> Path:
    """The user's own config directory: detector, task and dataset options of the new family."""
    conf = tmp_path / "user_conf"
    for group, text in (("detector", DETECTOR_YAML), ("task", TASK_YAML), ("dataset", DATASET_YAML)):
        (conf / group).mkdir(parents=True)
        (conf / group / ("spread.yaml" if group == "task" else "panel.yaml")).write_text(text)
    return conf


def test_the_plugin_family_honours_the_detector_contract() -> None:
    det = PanelDetector(n_side=4)
    assert isinstance(det, Detector) and det.family == "sensor_panel"
    assert det.sensor_positions.shape == (16, 3) and det.n_sensors == 16
    fp = detector_fingerprint
    assert fp(det) == fp(PanelDetector(n_side=4)) != fp(PanelDetector(n_side=5))
    assert det.aux_truth({"aux_vertex": np.zeros((3, 3))}) == {}  # nothing family-specific to add


def test_a_task_class_without_a_kind_is_refused() -> None:
    with pytest.raises(TypeError, match="must set the class attribute `kind`"):

        class Nameless(Task):  # noqa: F841 - defining it is the test
            pass


def test_simulate_train_predict_evaluate_a_family_defined_outside_recoml(
    tmp_path: Path, user_conf: Path
) -> None:
    search = f"hydra.searchpath=[file://{user_conf}]"
    data_dir = tmp_path / "data"
    cfg = make_cfg(
        tmp_path / "train",
        data_dir,
        [
            search,
            "detector=panel",
            "dataset=panel",
            "task=spread",
            "model=pointnet",
            "model.net.hidden=[32,32]",
            "model.net.head_hidden=32",
            "trainer.max_epochs=4",
            "trainer.limit_train_batches=null",
            "trainer.limit_val_batches=null",
            "trainer.limit_test_batches=null",
            "optimizer.lr=3e-3",
            "scheduler=none",
            "normalization_events=256",
        ],
    )
    metrics = train(cfg)
    # Simulated on first use by the family's own Simulator, found through the detector contract.
    with open_store(data_dir / "toy_panel.h5") as store:
        assert len(store) == 1500
    assert simulator_of(PanelDetector()).__name__ == "simulate_panel"
    # It learns: narrow and wide footprints are told apart far above chance.
    assert metrics["test/acc"] > 0.85, metrics

    ckpt = next((tmp_path / "train" / "run" / "checkpoints").glob("last.ckpt"))
    # A checkpoint naming classes outside recoml builds only with the user's explicit trust.
    trust = "trust=[tests.plugin_family.PanelDetector,tests.plugin_family.SpreadTask]"
    pred_cfg = compose_verb(
        "predict", tmp_path / "predict", [search, f"ckpt_path={ckpt}", "split=test", trust]
    )
    out = predict(pred_cfg)
    evaluation = evaluate_files([out], tmp_path / "evaluate", labels=["panel"])
    # The family's own evaluator, registered by the task's declared evaluator module, did the work.
    scalars = evaluation.scalars("spread", "panel")
    assert scalars["accuracy"] > 0.85 and scalars["n_events"] == 150
    assert scalars["mean_p_wide_wide"] > 0.5 > scalars["mean_p_wide_narrow"]
    assert "spread" in json.loads(evaluation.metrics.read_text())["sections"]
