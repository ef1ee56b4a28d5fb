"""Every command of docs/real-data.md, run in order as a user would (from a checkout-like directory with
``tests/`` and ``scripts/``, outputs under a temporary RECOML_ROOT)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from tests.helpers import REPO

DOC = REPO / "docs" / "real-data.md"


def doc_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", DOC.read_text(), flags=re.S)
    return [line for block in blocks for line in block.splitlines() if line.strip()]


def test_the_page_lists_a_whole_walk() -> None:
    commands = doc_commands()
    verbs = [re.match(r"python (-m recoml\.(\w+)|scripts/)", c).group(2) or "script" for c in commands]
    assert {"simulate", "convert", "train", "predict", "evaluate", "script"} <= set(verbs)
    assert sum("km3net" in c for c in commands) >= 6 and all(c.startswith("python ") for c in commands)
    assert sum("wcsim_raw_2010.root" in c for c in commands) >= 2  # real WCSim events and geometry


@pytest.mark.slow
def test_every_command_of_the_page_runs(tmp_path: Path) -> None:
    for name in ("tests", "scripts"):
        (tmp_path / name).symlink_to(REPO / name)
    env = dict(os.environ, RECOML_ROOT=str(tmp_path), OMP_NUM_THREADS="1")
    for command in doc_commands():
        line = sys.executable + command.removeprefix("python")
        result = subprocess.run(
            ["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900
        )
        assert result.returncode == 0, f"{command}\n{result.stderr[-3000:]}"
    outputs = tmp_path / "outputs"
    assert (outputs / "wcte_evaluate" / "report.md").is_file()
    assert (outputs / "km3net_display" / "displays" / "event0_strings.png").is_file()
    assert (outputs / "km3net_display" / "displays" / "event0_3d.html").is_file()
    report = (outputs / "km3net_evaluate" / "report.md").read_text()
    assert "gnn" in report and "pointnet" in report
    with h5py.File(outputs / "km3net_real_predict" / "predictions.h5") as f:
        assert len(f["event_index"]) == 10 and "ood_score" in f and "true_labels" not in f
    with h5py.File(outputs / "wcte_predict" / "predictions.h5") as f:
        assert len(f["event_index"]) == 120 and f.attrs["n_training_events"] == 0
    # the real raw WCSim pi0: 1,135 MeV total, regressed as kinetic energy (minus the pi0 mass)
    with h5py.File(outputs / "sk_predict" / "predictions.h5") as f:
        assert len(f["event_index"]) == 1 and abs(float(f["true_energy"][0]) - 1000.0) < 0.1
    assert (outputs / "sk_evaluate" / "report.md").is_file()
