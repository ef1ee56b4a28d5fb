"""``scripts/gpu_check.sh``: refuses to start in one sentence without what it needs, and its CPU rehearsal
runs every step and writes the summary, so a lent GPU's minutes are not lost to a renamed option."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.helpers import REPO

SCRIPT = REPO / "scripts" / "gpu_check.sh"
STEPS = ["train_fp32", "train_bf16", "representations", "inference", "tracking", "peer"]


def run_check(out: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "GPU_CHECK_REHEARSAL"}
    environ.update(PYTHON=sys.executable, **env)
    return subprocess.run(
        ["bash", str(SCRIPT), str(out)], env=environ, capture_output=True, text=True, timeout=900
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_without_a_gpu_it_refuses_in_one_sentence(tmp_path: Path) -> None:
    run = run_check(tmp_path / "out", PEER_WATCHMAL="skip")
    assert run.returncode == 2
    assert (
        run.stderr.startswith("gpu_check: no CUDA device is visible to torch") and run.stderr.count("\n") == 1
    )
    assert not (tmp_path / "out").exists()


def test_without_a_watchmal_checkout_it_refuses_in_one_sentence(tmp_path: Path) -> None:
    run = run_check(tmp_path / "out", GPU_CHECK_REHEARSAL="1", PEER_WATCHMAL=str(tmp_path))
    assert run.returncode == 2
    assert (
        run.stderr
        == f"gpu_check: PEER_WATCHMAL={tmp_path} holds no watchmal package (expected {tmp_path}/watchmal)\n"
    )
    unset = run_check(tmp_path / "out", GPU_CHECK_REHEARSAL="1", PEER_WATCHMAL="")
    assert unset.returncode == 2 and unset.stderr.startswith("gpu_check: set PEER_WATCHMAL=DIR")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_rehearsal_runs_every_step_and_writes_the_summary(tmp_path: Path) -> None:
    """With ``RECOML_WATCHMAL=DIR`` the peer step runs too; without it, it is reported skipped (exit 1)."""
    watchmal = os.environ.get("RECOML_WATCHMAL", "skip")
    out = tmp_path / "out"
    run = run_check(out, GPU_CHECK_REHEARSAL="1", PEER_WATCHMAL=watchmal, OMP_NUM_THREADS="1")
    steps = {s["step"]: s for s in map(json.loads, (out / "steps.jsonl").read_text().splitlines())}
    assert list(steps) == STEPS
    failed = [name for name, s in steps.items() if not s["ok"] and not s.get("skipped")]
    assert not failed, run.stderr
    assert run.returncode == (0 if watchmal != "skip" else 1), run.stderr
    summary = json.loads((out / "gpu_check.json").read_text())
    assert summary["machine"].endswith("CPU rehearsal, nothing measured")
    cases = {(r["step"], r.get("suite"), r.get("case")) for r in summary["rows"]}
    trained = (("train_fp32", "32-true", ("resnet18", "gnn")), ("train_bf16", "bf16-mixed", ("resnet18",)))
    for step, precision, models in trained:
        for model in models:
            for det in ("wcte", "hk"):
                assert (step, "train", f"{model} on {det} ({precision})") in cases
    suites = [(suite, case.split(",")[0]) for step, suite, case in cases if step == "representations"]
    assert sorted(suites) == sorted((s, d) for s in ("images", "knn", "points") for d in ("wcte", "hk"))
    inference = json.loads((out / "inference.json").read_text())["results"]
    assert {r["model"] for r in inference} >= {"resnet18 wcte", "resnet18 hk", "gnn wcte"}
    assert "full chain (geometric + IN + CC)" in (out / "tracking.log").read_text()
    table = (out / "gpu_check.md").read_text()
    assert "FAILED" not in table and "| train_fp32 | train | gnn on hk (32-true) |" in table
    if watchmal != "skip":
        assert "| hk_train_w64 | cpu |" in table
    else:
        assert "**Skipped steps: peer** (PEER_WATCHMAL=skip: no WatChMaL ratios)" in table
