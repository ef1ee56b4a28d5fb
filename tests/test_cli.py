"""The ``recoml <verb>`` console script: its help, its refusal of unknown verbs, one verb per entry point."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from recoml.cli import VERBS, main


def test_help_lists_every_verb(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: recoml <command>")
    for verb in ("train", "predict", "evaluate", "export", "convert", "simulate", "hpo", "bench"):
        assert f"\n  {verb} " in out, verb


def test_no_verb_prints_the_usage_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: recoml" in capsys.readouterr().out


def test_unknown_verb_is_one_sentence_and_exit_code_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trian", "model=gnn"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no command 'trian'" in err and "train" in err


def test_every_verb_is_an_entry_point_module_and_the_script_is_declared() -> None:
    for verb in VERBS:
        spec = importlib.util.find_spec(f"recoml.{verb}")
        if spec is not None and spec.submodule_search_locations:  # a package runs its __main__
            spec = importlib.util.find_spec(f"recoml.{verb}.__main__")
        assert spec is not None and spec.origin is not None, verb
        with open(spec.origin) as file:
            source = file.read()
        assert "@hydra.main(" in source and 'if __name__ == "__main__":' in source, verb
    (script,) = entry_points(group="console_scripts", name="recoml")  # [project.scripts] of the install
    assert script.value == "recoml.cli:main"


def _run(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


#: An option each verb's --help must name among its most used.
MOST_USED = {
    "train": "model=",
    "predict": "ckpt_path=",
    "evaluate": "predictions=",
    "export": "quantize=int8",
    "convert": "input=",
    "simulate": "n_events=",
    "hpo": "hparams_search=",
    "bench": "suites=",
    "display": "events=",
}


@pytest.mark.parametrize("verb", list(VERBS))
def test_help_of_every_command_lists_its_groups_and_most_used_options(verb: str, tmp_path: Path) -> None:
    result = _run(f"recoml.{verb}", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    out = result.stdout
    assert out.startswith(f"recoml {verb}: ") and "== Most used options ==" in out
    assert MOST_USED[verb] in out
    assert "== Config groups (group=option) ==" in out and "paths: default" in out
    if verb in ("train", "hpo"):
        assert "\nmodel: " in out and "resnet18" in out and "\nlogger: " in out
    assert f"recoml {verb} --cfg job" in out  # where the whole config is
    assert not list(tmp_path.iterdir())  # --help runs nothing


@pytest.mark.parametrize("args", [["hparams_search=pid_cnn"], ["-m", "hparams_search=pid_cnn"]])
def test_search_space_given_to_train_points_to_hpo(args: list[str], tmp_path: Path) -> None:
    result = _run("recoml.train", *args, f"paths.log_dir={tmp_path}", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "recoml hpo hparams_search=pid_cnn" in result.stderr
    assert not list(tmp_path.iterdir())  # nothing was run, no run directory


def test_search_space_chosen_by_a_users_config_is_refused_too(tmp_path: Path) -> None:
    from recoml.train import search_space_refusal

    (tmp_path / "mytrain.yaml").write_text(
        "defaults:\n  - train\n  - override hparams_search: pid_gnn\n  - _self_\n"
    )
    result = _run(
        "recoml.train",
        "--config-dir",
        str(tmp_path),
        "--config-name",
        "mytrain",
        f"paths.log_dir={tmp_path}/logs",
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.endswith(f"error: {search_space_refusal('pid_gnn')}\n")
    assert not list((tmp_path / "logs" / "train" / "runs").iterdir())  # Hydra's run directory is gone


def test_a_run_that_fails_before_writing_anything_leaves_no_run_directory(tmp_path: Path) -> None:
    result = _run("recoml.train", "optimizer.lr=-1", f"paths.log_dir={tmp_path}", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr == "error: optimizer.lr: expected a positive number, got -1\n"
    assert "expected a positive number" not in result.stdout  # once on the terminal, not twice
    runs = tmp_path / "train" / "runs"
    assert runs.is_dir() and not list(runs.iterdir())


def test_untouched_means_hydra_bookkeeping_and_the_commands_own_log_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from recoml.utils.cli import remove_if_untouched

    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / "train.log").write_text("[INFO] started\n")
    (run / ".recoml-run.lock").write_text("pid 1")
    assert remove_if_untouched(run, logs=[run / "train.log"]) and not run.exists()
    (run / ".hydra").mkdir(parents=True)
    (run / "config.yaml").write_text("seed: 1\n")
    assert not remove_if_untouched(run, logs=[]) and (run / "config.yaml").is_file()
    study = tmp_path / "study"  # an HPO study directory is its run directory: its journal stays
    (study / ".hydra").mkdir(parents=True)
    (study / "hpo.log").write_text("")
    (study / "journal.log").write_text("{}")
    assert not remove_if_untouched(study, logs=[study / "hpo.log"]) and (study / "journal.log").is_file()
    (tmp_path / ".hydra").mkdir()
    assert not remove_if_untouched(tmp_path, logs=[]) and tmp_path.is_dir()  # never the working directory
