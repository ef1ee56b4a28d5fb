"""Training end to end through composed configs (as lightning-hydra-template tests them)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from recoml import load_model
from recoml.errors import ConfigError, DataError
from recoml.training import train
from tests.helpers import REPO, make_cfg


def test_default_config_trains_one_step_and_writes_run_directory(tmp_path: Path, toy_data: Path) -> None:
    cfg = make_cfg(tmp_path, toy_data)
    metrics = train(cfg)
    run = tmp_path / "run"
    assert "test/acc" in metrics and "val/loss" in metrics
    assert (run / "config.yaml").exists() and (run / "metrics.json").exists()
    prov = json.loads((run / "provenance.json").read_text())
    assert prov["data_files"][0]["sha256"] and prov["recoml_version"]
    assert (run / "checkpoints" / "last.ckpt").exists()
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["recoml"]["data_files"][0]["path"].endswith("toy_wcte.h5")
    assert ckpt["hyper_parameters"]["config"]["model"]["name"] == "resnet18"


def test_checkpoint_alone_rebuilds_the_model(tmp_path: Path, toy_data: Path) -> None:
    from recoml.data.dataset import EventDataset

    cfg = make_cfg(tmp_path, toy_data)
    train(cfg)
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    model = load_model(str(ckpt))
    batch = EventDataset(toy_data / "toy_wcte.h5", target_fields=("labels",))[list(range(8))]
    probs = model.task.predict(model(batch))["probabilities"]
    assert probs.shape == (8, 3)
    assert torch.allclose(probs.sum(-1), torch.ones(8), atol=1e-5)
    # The normalization fitted on the training split travels with the checkpoint.
    state = torch.load(ckpt, weights_only=False)["state_dict"]
    assert any("normalizer" in k or "mean" in k for k in state)


def test_model_the_detector_cannot_feed_is_a_config_error(tmp_path: Path, toy_data: Path) -> None:
    cfg = make_cfg(tmp_path, toy_data, ["task=hit_classification"])  # resnet18 gives no per-hit output
    with pytest.raises(ConfigError, match="needs one output per hit"):
        train(cfg)


def test_task_whose_target_the_dataset_lacks_names_the_field(tmp_path: Path, toy_data: Path) -> None:
    cfg = make_cfg(tmp_path, toy_data, ["task=energy", "task.target=true_energy"])
    with pytest.raises(DataError, match="true_energy"):
        train(cfg)


def test_empty_split_is_a_data_error(tmp_path: Path, toy_data: Path) -> None:
    cfg = make_cfg(tmp_path, toy_data, ["dataset.fractions=[1.0,0.0,0.0]", "dataset.split_seed=5"])
    with pytest.raises(DataError, match="split"):
        train(cfg)


def test_checkpoint_from_another_task_is_refused(tmp_path: Path, toy_data: Path) -> None:
    train(make_cfg(tmp_path / "a", toy_data))
    ckpt = tmp_path / "a" / "run" / "checkpoints" / "last.ckpt"
    cfg = make_cfg(tmp_path / "b", toy_data, ["task=energy", f"ckpt_path={ckpt}"])
    with pytest.raises(ConfigError, match="task=pid"):
        train(cfg)


def test_user_target_model_trains(tmp_path: Path, toy_data: Path) -> None:
    cfg = make_cfg(
        tmp_path,
        toy_data,
        [
            "~model.net",
            "+model.net={_target_:tests.user_plugins.TinyImageNet,_partial_:true,hidden:8}",
            "+callbacks.user._target_=tests.user_plugins.CountingCallback",
        ],
    )
    metrics = train(cfg)
    assert metrics["train/loss"] > 0
    from tests.user_plugins import CountingCallback

    assert CountingCallback.batches >= 2


@pytest.mark.parametrize(
    "switches",
    [
        ["channels_last=true", "trainer.precision=bf16-mixed"],
        [
            "trainer.gradient_clip_val=0.5",
            "trainer.accumulate_grad_batches=2",
            "trainer.limit_train_batches=4",
        ],
        pytest.param(["compile=true"], marks=pytest.mark.slow),
    ],
    ids=["channels_last+bf16", "clip+accumulate", "compile"],
)
def test_performance_switches_train(tmp_path: Path, toy_data: Path, switches: list[str]) -> None:
    spy = ["+callbacks.spy._target_=tests.user_plugins.TrainerSpy"]
    metrics = train(make_cfg(tmp_path, toy_data, [*switches, *spy]))
    assert torch.isfinite(torch.tensor(metrics["test/loss"]))
    from tests.user_plugins import TrainerSpy

    trainer = TrainerSpy.trainer
    if "trainer.accumulate_grad_batches=2" in switches:
        assert trainer.accumulate_grad_batches == 2 and trainer.global_step == 2  # 4 batches, 2 steps
        assert trainer.gradient_clip_val == 0.5
    if "trainer.precision=bf16-mixed" in switches:
        assert trainer.precision == "bf16-mixed"
        module = trainer.lightning_module
        assert module.channels_last


def test_unknown_option_lists_the_available_ones() -> None:
    from hydra.errors import MissingConfigException

    from tests.helpers import compose_train

    with pytest.raises(MissingConfigException) as err:
        compose_train(["model=resnet_nope"])
    message = str(err.value)
    assert "Available options" in message and "resnet18" in message and "gnn" in message


def readme_recipe(command: str) -> list[str]:
    """The overrides of the README's first line starting with ``command`` (up to its comment)."""
    readme = (REPO / "README.md").read_text()
    line = next(line for line in readme.splitlines() if line.startswith(command))
    return line.split("#", 1)[0].split()[2:]  # drop `recoml train`


def test_readme_custom_model_recipe_trains_a_net_that_declares_only_its_inputs(
    tmp_path: Path, toy_data: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    package = tmp_path / "plugins" / "mypackage"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        "import torch\n"
        "from torch import nn\n\n\n"
        "class MyNet(nn.Module):\n"
        "    accepts = 'image'  # what the representation must build (README)\n\n"
        "    def __init__(self, in_channels: int, out_dim: int) -> None:\n"
        "        super().__init__()\n"
        "        self.conv = nn.Conv2d(in_channels, 8, 3, padding=1)\n"
        "        self.head = nn.Linear(8, out_dim)\n\n"
        "    def forward(self, x: torch.Tensor) -> torch.Tensor:\n"
        "        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3)))\n"
    )
    monkeypatch.syspath_prepend(str(package.parent))
    recipe = readme_recipe("recoml train model.net._target_=mypackage.MyNet ")
    assert recipe == ["model.net._target_=mypackage.MyNet"]
    spy = ["+callbacks.spy._target_=tests.user_plugins.TrainerSpy"]
    with caplog.at_level(logging.WARNING, logger="recoml.tasks.module"):
        metrics = train(make_cfg(tmp_path, toy_data, [*recipe, *spy]))
    assert metrics["test/loss"] > 0
    from tests.user_plugins import TrainerSpy

    assert type(TrainerSpy.trainer.lightning_module.net).__name__ == "MyNet"
    assert "MyNet does not declare circular_padding, dropout, fourier_scales, stem, stem_kernel, width" in (
        caplog.text
    )
    trust = ["mypackage.MyNet", "tests.user_plugins.TrainerSpy"]
    model = load_model(str(tmp_path / "run" / "checkpoints" / "last.ckpt"), trust=trust)
    assert type(model.net).__name__ == "MyNet"


def test_cpu_training_with_workers_builds_inputs_in_them(
    tmp_path: Path, toy_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a CPU with DataLoader workers the images are built (after augmentation) in the workers, into
    the loaders' shared output slots: the batches reaching the training step carry the finished images,
    equal to this process's build from the batch's hits, and training, validation and test run."""
    from recoml.tasks.module import RecoModule

    seen: list[bool] = []
    step = RecoModule.training_step

    def spying_step(self, batch, batch_idx):
        finished = isinstance(batch.inputs, torch.Tensor)
        seen.append(finished and torch.equal(batch.inputs, self.representation(replace(batch, inputs=None))))
        return step(self, batch, batch_idx)

    monkeypatch.setattr(RecoModule, "training_step", spying_step)
    metrics = train(make_cfg(tmp_path, toy_data, ["dataset.num_workers=2", "augment=cylinder"]))
    assert seen == [True, True]
    assert torch.isfinite(torch.tensor(metrics["test/loss"]))
