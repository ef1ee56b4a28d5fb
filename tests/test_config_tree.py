"""Every option of every config group composes and runs one fast training step (as
lightning-hydra-template does), so no option rots unnoticed. Options that need hardware this machine
lacks (GPUs) are marked ``gpu``; ddp_sim spawns processes and is run by test_ddp.py instead."""

from __future__ import annotations

from pathlib import Path

import pytest

from recoml.training import train
from tests.helpers import CONF_DIR, DATA_DIR, compose_train, make_cfg

#: Groups that only configure Hydra or the machine, hold recipes for other entry points, or are run by
#: their own test (every experiment recipe: tests/test_experiments.py).
NOT_RUN = {"hydra", "paths", "local", "convert", "experiment"}
#: Groups whose options are checked by composing only (search spaces for recoml hpo).
COMPOSE_ONLY = {"hparams_search"}
#: Small toy sets simulated on the fly for options that switch the detector.
SMALL_SIM = ["dataset.simulate.n_events=48", "dataset.fractions=[0.5,0.25,0.25]", "model.net.width=8"]
#: Tracking options run inside their recipe (experiment=tracking/...) on a few tiny toy tracker events.
TRACKING_SIM = [
    "dataset.simulate.n_events=8",
    "dataset.simulate.n_particles=40",
    "dataset.fractions=[0.5,0.25,0.25]",
]
TRACKING_RECIPE = {"metric_learning": "metric_learning", "tracker_gnn": "hit_classification"}
TRACKING_OPTIONS = {"toy_tracker", "trackml", "interaction_network", "edge_classification", *TRACKING_RECIPE}


def _options(group: str) -> list[str]:
    root = CONF_DIR / group
    return sorted(str(p.relative_to(root).with_suffix("")) for p in root.rglob("*.yaml"))


def _train_options() -> list[tuple[str, str]]:
    groups = sorted(p.name for p in CONF_DIR.iterdir() if p.is_dir() and p.name not in NOT_RUN)
    train_yaml = (CONF_DIR / "train.yaml").read_text()
    return [(g, o) for g in groups if f"- {g}:" in train_yaml for o in _options(g)]


#: Options run elsewhere: ddp_sim spawns worker processes (test_ddp.py runs it).
RUN_ELSEWHERE = {("trainer", "ddp_sim")}
#: Options that need a CUDA device (run on a GPU machine with ``-m gpu``).
CUDA_ONLY = {("trainer", "gpu"), ("trainer", "ddp")}
OPTIONS = [o for o in _train_options() if o not in RUN_ELSEWHERE]
PARAMS = [
    pytest.param(g, o, id=f"{g}={o}", marks=[pytest.mark.gpu] if (g, o) in CUDA_ONLY else [])
    for g, o in OPTIONS
]


def _extra_overrides(group: str, option: str, toy_data: Path) -> list[str]:
    """What an option needs besides itself to run one step on this machine's small data."""
    if group == "detector" and option == "trackml":
        trackml = f"detector.path={DATA_DIR / 'trackml' / 'detectors.csv.gz'}"
        return ["experiment=tracking/edge_classifier", trackml, *TRACKING_SIM]
    if option in TRACKING_OPTIONS and group in ("detector", "dataset", "model", "task"):
        return [f"experiment=tracking/{TRACKING_RECIPE.get(option, 'edge_classifier')}", *TRACKING_SIM]
    if group == "task" and option == "hit_classification":
        return ["model=gnn", "model.net.hidden=16"]
    if group in ("detector", "dataset") and option == "km3net":  # a sensor array: graphs, no images
        detx = f"detector.path={DATA_DIR / 'km3net' / 'km3net_offline.detx'}"
        return [detx, "model=gnn", "model.net.hidden=16", *SMALL_SIM[:2]]
    if group == "detector" and option == "from_file":
        return [f"detector.path={DATA_DIR / 'geometry' / 'wcte_wcsim_geofile.txt'}", *SMALL_SIM]
    if group in ("detector", "dataset") and option not in ("wcte", "toy", "from_file"):
        return SMALL_SIM
    if group == "dataset" and option == "from_file":
        return [
            f"dataset.path={toy_data / 'toy_wcte.h5'}",
            "dataset.num_workers=0",
            "dataset.pin_memory=false",
        ]
    return []


def test_every_group_of_train_yaml_is_covered() -> None:
    groups = {g for g, _ in OPTIONS}
    assert {"detector", "dataset", "model", "task", "optimizer", "scheduler", "metrics", "logger"} <= groups
    assert {"trainer", "callbacks", "debug", "augment"} <= groups


@pytest.mark.parametrize(("group", "option"), PARAMS)
def test_option_runs_one_step(group: str, option: str, tmp_path: Path, toy_data: Path, request) -> None:
    if group in COMPOSE_ONLY:
        cfg = compose_train([f"{group}={option}"])
        assert cfg is not None
        return
    if group == "logger" and option == "wandb":
        request.getfixturevalue("wandb_env")
    extra = _extra_overrides(group, option, toy_data)
    # Options that change the detector simulate their own small toy set in tmp_path.
    own_data = extra is SMALL_SIM or {SMALL_SIM[0], TRACKING_SIM[0]} & set(extra)
    data_dir = tmp_path / "data" if own_data else toy_data
    cfg = make_cfg(tmp_path, data_dir, [f"{group}={option}", *extra, "trainer.max_epochs=1"])
    metrics = train(cfg)
    assert (tmp_path / "run" / "config.yaml").is_file()
    if not cfg.trainer.fast_dev_run:
        assert any(k.startswith("test/") for k in metrics), metrics
