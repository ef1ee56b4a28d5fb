"""``python -m recoml.export``: ONNX files that agree with PyTorch on real events, with the normalization
inside, named inputs/outputs and metadata; export-friendly EdgeConv; int8; bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from recoml.data.dataset import EventDataset
from recoml.errors import ConfigError, DataError
from recoml.exporting import ParityError, export_model, model_metadata, session
from recoml.exporting.run import check_parity, export
from recoml.prediction.checkpoint import build_module, load_checkpoint
from tests.evaluation_helpers import compose_verb
from tests.helpers import REPO, compose_train


def _export(tmp_path: Path, ckpt: Path, *overrides: str) -> dict:
    return export(compose_verb("export", tmp_path / "run", [f"ckpt_path={ckpt}", *overrides]))


def _events(toy_data: Path, rows: range) -> tuple:
    ds = EventDataset(toy_data / "toy_wcte.h5", target_fields=("labels",))
    return ds[list(rows)]


def test_cnn_export_agrees_with_pytorch_and_carries_its_metadata(
    tmp_path: Path, toy_data: Path, pid_ckpt: Path
) -> None:
    summary = _export(tmp_path, pid_ckpt, "quantize=int8", "parity_batches=1")
    path = tmp_path / "run" / "model.onnx"
    assert summary["parity"]["max_scaled_diff"] <= 1e-4 and summary["parity"]["events"] > 0
    meta = model_metadata(path)
    assert meta["detector"] == "wcte" and meta["recoml_version"] and meta["task_kind"] == "classification"
    assert json.loads(meta["class_names"]) == ["gamma", "e", "mu"]
    features = json.loads(meta["feature_names"])
    assert features[:2] == ["charge_0", "charge_1"] and features[19] == "time_0" and len(features) == 38
    assert json.loads(meta["normalization_stats"])["charge_0"]["log1p"] is True
    sess = session(path)
    assert [i.name for i in sess.get_inputs()] == ["image"]
    assert [o.name for o in sess.get_outputs()] == ["probabilities"]
    # another batch size than the one traced, real events the export never saw: same numbers as PyTorch
    module = build_module(load_checkpoint(pid_ckpt))
    batch = _events(toy_data, range(100, 113))
    (image,) = export_model(module).inputs(batch)
    onnx_probs = sess.run(None, {"image": image.numpy()})[0]
    with torch.no_grad():
        torch_probs = module.task.predict(module(batch))["probabilities"].numpy()
    assert onnx_probs.shape == (13, 3) and np.abs(onnx_probs - torch_probs).max() <= 1e-4
    # int8: a second file and the change of the main metric on the test split
    int8 = summary["int8"]
    assert Path(int8["onnx"]).is_file() and int8["pid"]["metric"] == "accuracy"
    assert abs(int8["pid"]["change"]) <= 1.0 and int8["events"] == 60
    assert json.loads((tmp_path / "run" / "export.json").read_text())["parity"]["tolerance"] == 1e-4
    assert model_metadata(int8["onnx"])["quantization"].startswith("dynamic int8")


def test_gnn_export_takes_node_features_and_edges(tmp_path: Path, toy_data: Path, hits_ckpt: Path) -> None:
    summary = _export(tmp_path, hits_ckpt, "parity_batches=1", "batch_size=8")
    assert summary["inputs"] == ["x", "edge_index", "batch"] and summary["outputs"] == ["hit_probability"]
    path = tmp_path / "run" / "model.onnx"
    meta = model_metadata(path)
    assert json.loads(meta["feature_names"]) == ["x", "y", "z", "dir_x", "dir_y", "dir_z", "charge", "time"]
    assert json.loads(meta["graph"])["k"] == 16
    module = build_module(load_checkpoint(hits_ckpt))
    batch = _events(toy_data, range(200, 205))
    x, edge_index, graph = export_model(module).inputs(batch)
    out = session(path).run(None, {"x": x.numpy(), "edge_index": edge_index.numpy(), "batch": graph.numpy()})[
        0
    ]
    with torch.no_grad():
        expected = module.task.predict(module(batch))["hit_probability"].numpy()
    assert out.shape == (batch.n_hits,) and np.abs(out - expected).max() <= 1e-4


@pytest.mark.parametrize("aggr", ["max", "mean", "add"])
def test_export_friendly_edgeconv_equals_pyg(aggr: str) -> None:
    """The gather + scatter EdgeConv of the export view against PyG's EdgeConv, untrained weights."""
    from recoml.families.water_cherenkov.synthetic import random_hit_batch
    from recoml.tasks.module import RecoModule

    cfg = compose_train(["model=gnn", f"model.net.aggr={aggr}", "paths.data_dir=.", "paths.log_dir=.",
                         "paths.output_dir=."],
                        return_hydra_config=False)  # fmt: skip
    config = OmegaConf.to_container(cfg, resolve=True)
    torch.manual_seed(0)
    module = RecoModule(config).eval()
    for p in module.parameters():  # BatchNorm at its init is the identity: make it do something
        p.data.normal_(0, 0.5)
    batch = random_hit_batch(module.detector, 6, 40, generator=torch.Generator().manual_seed(1))
    view = export_model(module)
    with torch.no_grad():
        mine = view(*view.inputs(batch))[0]
        pyg = module.task.predict(module(batch))["probabilities"]
    assert torch.allclose(mine, pyg, atol=1e-5)


def test_parity_check_catches_a_model_that_does_not_match(
    tmp_path: Path, pid_ckpt: Path, toy_data: Path
) -> None:
    _export(tmp_path, pid_ckpt, "parity_batches=1")
    module = build_module(load_checkpoint(pid_ckpt))
    with torch.no_grad():
        module.net.head.net[-1].bias.add_(torch.tensor([1.0, 0.0, -1.0]))  # the final Linear
    batch = _events(toy_data, range(0, 16))
    with pytest.raises(ParityError, match="onnxruntime differs from the PyTorch model"):
        check_parity(tmp_path / "run" / "model.onnx", export_model(module), module, [batch], 1e-4)


# ------------------------------------------------------------------------------------------ bad input


def test_unsupported_requests_are_config_errors(tmp_path: Path, pid_ckpt: Path) -> None:
    with pytest.raises(ConfigError, match="format: 'tflite' is not supported"):
        _export(tmp_path / "a", pid_ckpt, "format=tflite")
    with pytest.raises(ConfigError, match="quantize: 'int4' is not supported"):
        _export(tmp_path / "b", pid_ckpt, "quantize=int4")
    target = tmp_path / "model.onnx"
    target.write_text("old")
    with pytest.raises(DataError, match="model.onnx already exists; set overwrite=true"):
        _export(tmp_path / "c", pid_ckpt, f"output={target}")


def test_models_without_an_export_friendly_version_say_so() -> None:
    from recoml.tasks.module import RecoModule

    for model, match in (("dgcnn", "dynamic=true"), ("pointnet", "'points' inputs")):
        cfg = compose_train(
            [f"model={model}", "paths.data_dir=.", "paths.log_dir=.", "paths.output_dir=."],
            return_hydra_config=False,
        )
        module = RecoModule(OmegaConf.to_container(cfg, resolve=True))
        with pytest.raises(ConfigError, match=match):
            export_model(module)


@pytest.mark.slow
def test_export_cli_writes_the_model_and_copies_it(tmp_path: Path, pid_ckpt: Path) -> None:
    out = tmp_path / "deploy" / "pid.onnx"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "recoml.export", f"ckpt_path={pid_ckpt}", f"output={out}", "quantize=int8",
           f"paths.root_dir={tmp_path}"]  # fmt: skip
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    assert out.is_file() and (out.parent / "pid.int8.onnx").is_file()
    assert "parity onnxruntime vs PyTorch" in result.stderr + result.stdout


def test_image_export_rebuilds_the_training_image_with_zero_hits(toy_data: Path, pid_ckpt: Path) -> None:
    """The export view normalizes exactly the pixels training normalized, including hits whose raw value is
    0 (the trigger hit's trigger-relative time): a PMT is occupied when any of its quantities is nonzero."""
    module = build_module(load_checkpoint(pid_ckpt)).eval()
    view = export_model(module).eval()
    batch = _events(toy_data, range(0, 40))
    zero_time = (batch.hits["time"] == 0) & (batch.hits["charge"] != 0)
    assert int(zero_time.sum()) > 0  # the toy's trigger hits: without them this test would test nothing
    seen: dict[str, torch.Tensor] = {}
    module.net.register_forward_pre_hook(lambda _m, args: seen.__setitem__("train", args[0]))
    view.net.register_forward_pre_hook(lambda _m, args: seen.__setitem__("export", args[0]))
    with torch.no_grad():
        module(batch)
        view(*view.inputs(batch))
    torch.testing.assert_close(seen["export"], seen["train"], rtol=0, atol=1e-5)
