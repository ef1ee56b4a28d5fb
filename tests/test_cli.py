"""The ``recoml <verb>`` console script: its help, its refusal of unknown verbs, one verb per entry point."""

from __future__ import annotations

import importlib.util
from importlib.metadata import entry_points

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
