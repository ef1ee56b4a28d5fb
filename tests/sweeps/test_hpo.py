"""Optuna studies over training configs (``python -m recoml.hpo``): search spaces, checks made before any
trial, tiny studies end to end (reports, best experiment, resume, failures, pruning, subprocess trials)."""

from __future__ import annotations

import json
import math
import os
import re
import socket
import subprocess
import sys
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import lightning.pytorch as pl
import optuna
import pandas as pd
import psutil
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf
from optuna.trial import TrialState

from recoml.conf import CONF_DIR
from recoml.errors import ConfigError
from recoml.sweeps.checks import check_objective, check_space, logged_metrics
from recoml.sweeps.compose import as_job, compose, user_search_path
from recoml.sweeps.objective import Objective
from recoml.sweeps.space import format_value, parse_space
from recoml.sweeps.storage import fail_dead_trials, open_storage
from recoml.sweeps.study import _logger_groups, export_paths, run_study
from recoml.training import train
from tests.helpers import TINY

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

#: Every trial: tiny, and no test pass after fit (what is under test here is the study, not testing).
TRIAL_BASE = (*TINY, "model.net.width=8", "test=false")

TINY_SPACE = """\
# @package _global_
hpo:
  params:
    optimizer.lr: {low: 1.0e-4, high: 1.0e-2, log: true}
    model.net.width: "choice(8, 16)"
"""


def user_conf(tmp_path: Path, spaces: dict[str, str] | None = None) -> Path:
    """A config directory for the Hydra search path with the tests' search spaces (and exports)."""
    root = tmp_path / "user_conf"
    (root / "hparams_search").mkdir(parents=True, exist_ok=True)
    for name, text in (spaces or {"tiny": TINY_SPACE}).items():
        path = root / "hparams_search" / f"{name}.yaml"
        if spaces is not None or not path.exists():  # a test's own spaces stay
            path.write_text(text)
    return root


def study_overrides(tmp_path: Path, data: Path, extra: Sequence[str] = (), space: str = "tiny") -> list[str]:
    conf = user_conf(tmp_path)
    return [
        f"hydra.searchpath=[file://{conf}]",
        f"hparams_search={space}",
        f"paths.data_dir={data}",
        f"paths.log_dir={tmp_path / 'logs'}",
        f"hpo.export_dir={conf}",
        *TRIAL_BASE,
        *extra,
    ]


@contextmanager
def driver(overrides: Sequence[str], tmp_path: Path):
    """The study's own config under Hydra's run-time state, as ``python -m recoml.hpo`` has it."""
    cfg = compose("hpo", overrides)
    with as_job(cfg, tmp_path / "driver") as job_cfg:
        yield job_cfg


def study(tmp_path: Path, data: Path, extra: Sequence[str] = (), callbacks=()) -> optuna.Study:
    overrides = study_overrides(tmp_path, data, extra)
    with driver(overrides, tmp_path) as cfg:
        return run_study(cfg, overrides, callbacks)


def study_dir(tmp_path: Path, name: str = "tiny") -> Path:
    return tmp_path / "logs" / "hpo" / name


def best_experiment(tmp_path: Path, name: str = "tiny") -> Path:
    """Where a study writes its best trial: its own directory is a config dir (experiment/hpo/<name>)."""
    return study_dir(tmp_path, name) / "experiment" / "hpo" / f"{name}.yaml"


# -- search spaces ----------------------------------------------------------------------------------
def test_search_space_specs_become_optuna_distributions() -> None:
    space = parse_space(
        {
            "optimizer.lr": {"low": 1e-4, "high": 1e-2, "log": True},
            "model.net.n_layers": {"low": 2, "high": 4},
            "model.net.dropout": {"low": 0.0, "high": 0.3, "step": 0.1},
            "model": {"choices": ["gnn", "dgcnn"]},
            "a": "tag(log, interval(1e-5, 1e-3))",
            "b": "range(16, 65, 16)",
            "c": "tag(int, interval(2, 6))",
            "d": "choice(relu, gelu)",
        }
    )
    dist = {p.key: p.distribution() for p in space}
    D = optuna.distributions
    assert dist["optimizer.lr"] == D.FloatDistribution(1e-4, 1e-2, log=True)
    assert dist["model.net.n_layers"] == D.IntDistribution(2, 4)
    assert dist["model.net.dropout"] == D.FloatDistribution(0.0, 0.3, step=0.1)
    assert dist["model"] == D.CategoricalDistribution(["gnn", "dgcnn"])
    assert dist["a"] == D.FloatDistribution(1e-5, 1e-3, log=True)
    assert dist["b"] == D.IntDistribution(16, 64, step=16)  # range() excludes its stop, as Python's does
    assert dist["c"] == D.IntDistribution(2, 6)
    assert dist["d"] == D.CategoricalDistribution(["relu", "gelu"])


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"low": 1.0}, "needs both 'low' and 'high'"),
        ({"low": 2.0, "high": 1.0}, "must be below"),
        ({"low": 0.0, "high": 1.0, "log": True}, "log range needs low > 0"),
        ({"low": 1e-3, "high": 1.0, "log": True, "step": 0.1}, "cannot be combined"),
        ({"lo": 0.0, "high": 1.0}, "unknown field"),
        ({"choices": []}, "'choices' is empty"),
        ({"choices": [[1, 2]]}, "choices must be"),
        ("interval(0.1", "cannot parse sweep"),
        ("0.5", "not a search range"),
    ],
)
def test_malformed_search_spec_names_the_key(spec, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        parse_space({"optimizer.lr": spec}, "hparams_search=mine")
    assert "hparams_search=mine.optimizer.lr" in str(err.value)


@pytest.mark.parametrize(
    "value", [1e-05, 0.00123, 3, True, None, "resnet18", "true", "16", "a b", "it's", "/tmp/x-1/0003", -2.5]
)
def test_trial_values_round_trip_through_hydra_overrides(value) -> None:
    parsed = OverridesParser.create().parse_override(f"a.b={format_value(value)}").value()
    assert parsed == value and type(parsed) is type(value)


@pytest.mark.parametrize(
    ("name", "objective"),
    [
        ("pid_cnn", "val/loss"),
        ("pid_gnn", "val/loss"),
        ("energy_cnn", "val/resolution"),
        ("energy_gnn", "val/resolution"),
    ],
)
def test_shipped_search_spaces_pass_the_checks(name: str, objective: str, tmp_path: Path) -> None:
    overrides = [f"hparams_search={name}", f"paths.log_dir={tmp_path}"]
    with driver(overrides, tmp_path) as cfg:
        assert cfg.hpo.study_name == name
        assert cfg.hpo.objective == objective  # the search space's settings win over hpo's defaults
        space = parse_space(cfg.hpo.params)
        check_space(space, overrides, f"hparams_search={name}")
        assert check_objective(cfg) == "minimize"
        assert {p.key for p in space} >= {"optimizer.lr", "model"}
        assert cfg.task.name == name.split("_")[0]
        assert cfg.model.name == {"cnn": "resnet18", "gnn": "gnn"}[name.split("_")[1]]
        assert cfg.task_name == "hpo" and "optuna_pruning" in cfg.callbacks


def test_search_space_file_overrides_the_study_defaults_and_the_command_line_wins(tmp_path: Path) -> None:
    user_conf(
        tmp_path,
        {
            "mine": "# @package _global_\nhpo:\n  n_trials: 7\n  sampler:\n    n_startup_trials: 3\n"
            "  params:\n    optimizer.lr: {low: 1.0e-4, high: 1.0e-2}\n"
        },
    )
    base = [f"hydra.searchpath=[file://{tmp_path / 'user_conf'}]", "hparams_search=mine"]
    with driver(base, tmp_path) as cfg:
        assert (cfg.hpo.n_trials, cfg.hpo.sampler.n_startup_trials, cfg.hpo.sampler.seed) == (7, 3, 42)
    with driver([*base, "hpo.n_trials=9"], tmp_path) as cfg:
        assert cfg.hpo.n_trials == 9


# -- bad input: one sentence each, before any trial is spent --------------------------------------------
BAD_SPACES = {
    "typo": "# @package _global_\nhpo:\n  params:\n    optimizer.lrr: {low: 1.0e-4, high: 1.0e-2}\n",
    "bad_option": "# @package _global_\nhpo:\n  params:\n    model: {choices: [resnet18, resnet99]}\n",
    "per_model": (
        "# @package _global_\nhpo:\n  params:\n    model: {choices: [resnet18, gnn]}\n"
        "    model.net.width: {choices: [8, 16]}\n"
    ),
}


@pytest.mark.parametrize(
    ("space", "extra", "message"),
    [
        ("typo", [], r"'optimizer.lrr' is not a key of the composed train config \(optimizer has: .*lr"),
        ("per_model", [], "'model.net.width' is not a key of the composed train config when model=gnn"),
        ("bad_option", [], "hparams_search=bad_option: model=resnet99: cannot compose .*'model/resnet99'"),
        ("tiny", ["hpo.objective=val/accuracy"], "never logs 'val/accuracy'; it logs .*val/acc, "),
        ("tiny", ["hpo.objective=val/acc"], "hpo.direction: set minimize or maximize"),
        ("tiny", ["hpo.storage=sqlite:////nonexistent/dir/study.db"], "hpo.storage: cannot open sqlite:"),
        (
            "tiny",
            ["hpo.storage=postgresql://hpo:secret@127.0.0.1:9/db"],
            "cannot open postgresql://hpo:\\*\\*\\*",
        ),
        ("tiny", ["hpo.n_jobs=2"], "hpo.n_jobs=2 needs hpo.launch=subprocess"),
        ("tiny", ["trainer=ddp_sim"], "hpo.launch=inprocess cannot run DDP trials"),
        (
            "tiny",
            ["hpo.launch=subprocess", "hpo.n_jobs=3", "hpo.devices=[0,1]"],
            "hpo.n_jobs=3 trials x hpo.devices_per_trial=1 need 3 GPUs, 2 are available",
        ),
    ],
)
def test_bad_study_input_is_refused_before_any_trial(
    tmp_path: Path, space: str, extra: list[str], message: str
) -> None:
    user_conf(tmp_path, {"tiny": TINY_SPACE, **BAD_SPACES})
    overrides = study_overrides(tmp_path, tmp_path / "no_data", extra, space=space)
    with driver(overrides, tmp_path) as cfg, pytest.raises(ConfigError, match=message) as err:
        run_study(cfg, overrides)
    assert "\n" not in str(err.value)
    assert not (study_dir(tmp_path, space) / "trials").exists()


def test_study_without_a_search_space_is_refused(tmp_path: Path) -> None:
    overrides = [f"paths.log_dir={tmp_path}"]
    with driver(overrides, tmp_path) as cfg, pytest.raises(ConfigError, match="choose a search space"):
        run_study(cfg, overrides)


def test_logged_metrics_are_the_tasks_declared_ones(tmp_path: Path) -> None:
    with driver(["task=energy", f"paths.log_dir={tmp_path}"], tmp_path) as cfg:
        names = logged_metrics(cfg)
    assert {"train/loss", "val/loss", "val/resolution", "val/bias", "test/abs_error"} <= set(names)


def test_wandb_logger_groups_trials_under_the_study_name(tmp_path: Path) -> None:
    with driver(["logger=wandb", f"paths.log_dir={tmp_path}"], tmp_path) as cfg:
        assert _logger_groups(cfg, "pid_cnn") == ["logger.wandb.group=pid_cnn"]
    with driver([f"paths.log_dir={tmp_path}"], tmp_path) as cfg:  # csv: nothing to group
        assert _logger_groups(cfg, "pid_cnn") == []


# -- objective: failures and NaN are recorded, not raised -------------------------------------------
class FixedMetrics(Objective):
    def __init__(self, metrics: dict[str, float], tmp_path: Path) -> None:
        super().__init__(
            space=parse_space({"x": {"low": 0.0, "high": 1.0}}), study_dir=tmp_path, objective="val/loss"
        )
        self.metrics = metrics

    def _run(self, trial, overrides, run_dir):
        return self.metrics


@pytest.mark.parametrize(
    ("metrics", "error"),
    [({"val/loss": math.nan}, "val/loss is nan"), ({"val/acc": 0.5}, "logged no 'val/loss' \\(it logged")],
)
def test_nan_or_missing_objective_fails_the_trial_with_its_error(tmp_path: Path, metrics, error) -> None:
    s = optuna.create_study()
    s.optimize(FixedMetrics(metrics, tmp_path), n_trials=2, catch=(Exception,))
    assert [t.state for t in s.trials] == [TrialState.FAIL, TrialState.FAIL]
    assert all(t.user_attrs["error"].startswith("TrialError: ") for t in s.trials)
    assert re.search(error, s.trials[0].user_attrs["error"])


def test_trial_of_a_dead_worker_is_marked_failed_and_not_counted(tmp_path: Path) -> None:
    s = optuna.create_study(storage=open_storage(None, tmp_path), study_name="s")
    dead, alive = s.ask(), s.ask()
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    for trial, pid, started in (
        (dead, int(done.stdout), 0.0),
        (alive, os.getpid(), psutil.Process().create_time()),
    ):
        trial.set_user_attr("host", socket.gethostname())
        trial.set_user_attr("pid", pid)
        trial.set_user_attr("pid_started", started)
    assert fail_dead_trials(s) == [dead.number]
    states = {t.number: t.state for t in s.get_trials()}
    assert states == {dead.number: TrialState.FAIL, alive.number: TrialState.RUNNING}
    assert "died" in s.trials[dead.number].user_attrs["error"]


# -- tiny studies, end to end -----------------------------------------------------------------------
def test_three_trial_study_writes_reports_and_a_best_experiment_that_reproduces_it(
    tmp_path: Path, toy_data: Path
) -> None:
    s = study(tmp_path, toy_data, ["hpo.n_trials=3"])
    assert [t.state for t in s.trials] == [TrialState.COMPLETE] * 3
    out = study_dir(tmp_path)
    table = pd.read_csv(out / "trials.csv")
    assert list(table["trial"])[0] == s.best_trial.number  # best first
    assert table["val/loss"].is_monotonic_increasing and len(table) == 3
    assert (out / "trials.md").read_text().count("| COMPLETE |") == 3
    for plot in ("optimization_history", "param_importances", "parallel_coordinate"):
        assert (out / f"{plot}.png").stat().st_size > 1000
    for number in range(3):
        metrics = json.loads((out / "trials" / f"{number:04d}" / "metrics.json").read_text())
        assert metrics["val/loss"] == s.trials[number].value

    exported = tmp_path / "user_conf" / "experiment" / "hpo" / "tiny.yaml"  # hpo.export_dir
    assert exported.read_text() == best_experiment(tmp_path).read_text()
    assert exported.read_text().startswith("# @package _global_\n")
    assert not (CONF_DIR / "experiment" / "hpo").exists()  # never into the package
    best = s.best_trial
    recipe = OmegaConf.load(exported)
    assert recipe.optimizer.lr == best.params["optimizer.lr"]
    assert "paths" not in recipe and "hpo" not in recipe

    # python -m recoml.train --config-dir <study_dir> experiment=hpo/tiny, as composed by the entry point
    # (--config-dir puts the directory on the search path): same config, same result.
    cfg = compose(
        "train",
        [
            f"hydra.searchpath=[file://{study_dir(tmp_path)}]",
            "experiment=hpo/tiny",
            f"paths.data_dir={toy_data}",
            f"paths.log_dir={tmp_path / 'logs'}",
        ],
    )
    assert cfg.model.net.width == best.params["model.net.width"]
    with as_job(cfg, tmp_path / "reproduced") as job:
        metrics = train(job)
    assert metrics["val/loss"] == pytest.approx(best.value, rel=1e-5)
    trial_cfg = OmegaConf.load(Path(best.user_attrs["run_dir"]) / "config.yaml")
    again = OmegaConf.load(tmp_path / "reproduced" / "config.yaml")
    for key in (
        "model",
        "optimizer",
        "scheduler",
        "dataset.batch_size",
        "trainer.max_epochs",
        "task",
        "seed",
    ):
        assert OmegaConf.select(again, key) == OmegaConf.select(trial_cfg, key), key


class CtrlC(pl.Callback):
    """Ctrl+C in the middle of the ``at``-th fit of this process."""

    fits = 0

    def __init__(self, at: int) -> None:
        self.at = at

    def on_fit_start(self, trainer, pl_module) -> None:
        CtrlC.fits += 1

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if CtrlC.fits == self.at:
            raise KeyboardInterrupt


def test_interrupted_study_resumes_with_its_finished_trials_kept(tmp_path: Path, toy_data: Path) -> None:
    """Ctrl+C during trial 1 (Lightning turns it into SystemExit); RDB storage; the same command again."""
    CtrlC.fits = 0
    extra = [
        "hpo.n_trials=3",
        "hpo.plots=false",
        f"hpo.storage=sqlite:///{tmp_path / 'study.db'}",
        "+callbacks.ctrl_c={_target_:tests.sweeps.test_hpo.CtrlC,at:2}",
    ]
    with pytest.raises(KeyboardInterrupt):
        study(tmp_path, toy_data, extra)
    first = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'study.db'}")
    assert [t.state for t in first.trials] == [TrialState.COMPLETE, TrialState.FAIL]
    assert first.trials[1].user_attrs["interrupted"] is True
    assert (study_dir(tmp_path) / "trials.csv").exists()  # reports written on the way out

    resumed = study(tmp_path, toy_data, extra)
    states = [t.state for t in resumed.trials]
    assert states == [TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert resumed.trials[0].value == first.trials[0].value
    assert resumed.trials[0].params == first.trials[0].params
    # The resumed sampler is seeded differently: no replay of the first run's draws.
    assert resumed.trials[2].params != first.trials[0].params
    # Already complete: running again starts nothing.
    assert len(study(tmp_path, toy_data, extra).trials) == 4


def test_failing_trial_is_recorded_and_the_study_goes_on(tmp_path: Path, toy_data: Path) -> None:
    user_conf(
        tmp_path,
        {"tiny": "# @package _global_\nhpo:\n  params:\n    optimizer.lr: {choices: [-1.0, 1.0e-3]}\n"},
    )
    s = study(
        tmp_path,
        toy_data,
        [
            "hpo.n_trials=2",
            "hpo.sampler._target_=optuna.samplers.BruteForceSampler",
            "~hpo.sampler.n_startup_trials",
        ],
    )
    by_lr = {t.params["optimizer.lr"]: t for t in s.trials}
    assert by_lr[-1.0].state == TrialState.FAIL
    assert "optimizer.lr: expected a positive number" in by_lr[-1.0].user_attrs["error"]
    assert by_lr[1e-3].state == TrialState.COMPLETE
    table = pd.read_csv(study_dir(tmp_path) / "trials.csv")
    assert list(table["state"]) == ["COMPLETE", "FAIL"]
    assert "optimizer.lr: expected a positive number" in table["error"].iloc[1]
    best = best_experiment(tmp_path).read_text()
    assert f"Best trial {by_lr[1e-3].number} of study 'tiny'" in best
    assert "optimizer:" not in best  # lr=1e-3 is adamw's default: nothing to override
    # One completed trial: history drawn, importances skipped (they need two), not an error.
    assert (study_dir(tmp_path) / "optimization_history.png").exists()
    assert not (study_dir(tmp_path) / "param_importances.png").exists()


def test_pruning_stops_a_trial_that_reports_a_bad_value(tmp_path: Path, toy_data: Path) -> None:
    s = study(
        tmp_path,
        toy_data,
        [
            "hpo.n_trials=1",
            "hpo.plots=false",
            "trainer.max_epochs=3",
            "callbacks.early_stopping=null",
            "hpo.pruner._target_=optuna.pruners.ThresholdPruner",
            "~hpo.pruner.n_startup_trials",
            "hpo.pruner.n_warmup_steps=0",
            "+hpo.pruner.upper=0.0",  # any positive val/loss is bad
        ],
    )
    (trial,) = s.trials
    assert trial.state == TrialState.PRUNED
    assert list(trial.intermediate_values) == [0]  # reported after epoch 0, then stopped
    assert trial.intermediate_values[0] > 0
    run = study_dir(tmp_path) / "trials" / "0000"
    assert json.loads((run / "pruned.json").read_text())["epoch"] == 0
    assert not (run / "metrics.json").exists()
    assert not best_experiment(tmp_path).exists()  # nothing completed


def test_exported_experiment_of_another_study_is_not_overwritten(tmp_path: Path, toy_data: Path) -> None:
    target = tmp_path / "user_conf" / "experiment" / "hpo" / "tiny.yaml"
    target.parent.mkdir(parents=True)
    target.write_text("# @package _global_\n# written by hand\n")
    with pytest.raises(ConfigError, match="exists and was not written by study 'tiny'"):
        study(tmp_path, toy_data, ["hpo.n_trials=1"])
    assert target.read_text() == "# @package _global_\n# written by hand\n"


@pytest.mark.slow  # a fresh Python, imports and Hydra per trial: ~10-25 s on a shared 2-core box
def test_subprocess_trial_runs_python_m_recoml_train_on_cpu(tmp_path: Path, toy_data: Path) -> None:
    s = study(tmp_path, toy_data, ["hpo.n_trials=1", "hpo.launch=subprocess"])
    (trial,) = s.trials
    assert trial.state == TrialState.COMPLETE, trial.user_attrs.get("error")
    run = study_dir(tmp_path) / "trials" / "0000"
    assert (run / ".hydra" / "overrides.yaml").exists()  # its own Hydra run directory
    assert trial.value == json.loads((run / "metrics.json").read_text())["val/loss"]
    assert list(trial.intermediate_values) == [0]  # the pruning callback reported through the storage


@pytest.mark.slow
def test_hpo_command_line_runs_resumes_and_its_best_trial_reproduces(tmp_path: Path, toy_data: Path) -> None:
    """The commands docs/hpo.md gives: a study with the user's search space from ``--config-dir``, run
    twice (resumed), then ``python -m recoml.train --config-dir <study_dir> experiment=hpo/tiny``."""
    args = [
        o for o in study_overrides(tmp_path, toy_data) if not o.startswith(("hydra.searchpath", "hpo.export"))
    ]
    args = ["--config-dir", str(user_conf(tmp_path)), *args, "hpo.launch=subprocess"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for n in (1, 2):
        done = subprocess.run(
            [sys.executable, "-m", "recoml.hpo", *args, f"hpo.n_trials={n}"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr[-3000:]
    table = pd.read_csv(study_dir(tmp_path) / "trials.csv")
    assert sorted(table["trial"]) == [0, 1] and set(table["state"]) == {"COMPLETE"}
    assert best_experiment(tmp_path).exists()
    assert not (tmp_path / "user_conf" / "experiment").exists()  # no hpo.export_dir: the study dir only
    best = json.loads((study_dir(tmp_path) / "best_trial.json").read_text())
    out = tmp_path / "reproduced"
    train_args = [f"paths.data_dir={toy_data}", f"paths.log_dir={tmp_path / 'logs'}", f"hydra.run.dir={out}"]
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "recoml.train",
            "--config-dir",
            str(study_dir(tmp_path)),
            "experiment=hpo/tiny",
        ]
        + train_args,
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads((out / "metrics.json").read_text())["val/loss"] == pytest.approx(
        best["val/loss"], rel=1e-5
    )


def test_user_config_dirs_follow_every_trial() -> None:
    """``--config-dir`` and ``hydra.searchpath`` of the study become one override that trials repeat."""
    hydra_cfg = OmegaConf.create(
        {
            "searchpath": ["file:///b"],
            "runtime": {
                "config_sources": [
                    {"path": "recoml.conf", "schema": "pkg", "provider": "main"},
                    {"path": "/a dir", "schema": "file", "provider": "command-line"},
                    {"path": "/b", "schema": "file", "provider": "hydra.searchpath in command-line"},
                ]
            },
        }
    )
    (override,) = user_search_path(hydra_cfg)
    assert override == "hydra.searchpath=['file:///a dir','file:///b']"
    assert OverridesParser.create().parse_override(override).value() == ["file:///a dir", "file:///b"]
    assert user_search_path(OmegaConf.create({"searchpath": [], "runtime": {"config_sources": []}})) == []


def test_best_trial_goes_to_the_study_directory_and_to_an_export_dir_only_if_asked(tmp_path: Path) -> None:
    base = ["hparams_search=pid_cnn", f"paths.log_dir={tmp_path}"]
    with driver(base, tmp_path) as cfg:
        assert cfg.hpo.export_dir is None
        local = tmp_path / "hpo" / "pid_cnn" / "experiment" / "hpo" / "pid_cnn.yaml"
        assert export_paths(cfg) == (local, None)
    with driver([*base, "hpo.export_dir=/me/conf"], tmp_path) as cfg:
        assert export_paths(cfg)[1] == Path("/me/conf/experiment/hpo/pid_cnn.yaml")


@pytest.mark.slow
def test_parallel_subprocess_trials_each_get_their_own_devices(tmp_path: Path, toy_data: Path) -> None:
    s = study(
        tmp_path, toy_data, ["hpo.n_trials=2", "hpo.launch=subprocess", "hpo.n_jobs=2", "hpo.devices=[0,1]"]
    )
    assert [t.state for t in s.trials] == [TrialState.COMPLETE] * 2
    assert sorted(t.user_attrs["devices"] for t in s.trials) == ["0", "1"]  # CUDA_VISIBLE_DEVICES per trial
