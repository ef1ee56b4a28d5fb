"""The suite deletes a passed test's files when the test ends, so its disk use stays bounded.

Its training tests write checkpoints of up to 250 MB; kept until the session ended they came to about
5 GB, and CI once failed with "No space left on device" halfway through.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

_INNER_TEST = """
from pathlib import Path


def test_writes(tmp_path):
    (tmp_path / "checkpoint.ckpt").write_bytes(bytes(1024))
    Path({record!r}).write_text(str(tmp_path))


def test_fails(tmp_path):
    (tmp_path / "kept.txt").write_text("evidence")
    Path({failed!r}).write_text(str(tmp_path))
    assert False
"""


def test_passed_tests_leave_no_files_and_failed_ones_keep_theirs(
    tmp_path: Path, pytestconfig: pytest.Config
) -> None:
    inner = tmp_path / "inner"
    inner.mkdir()
    record, failed = tmp_path / "passed_dir.txt", tmp_path / "failed_dir.txt"
    (inner / "test_inner.py").write_text(_INNER_TEST.format(record=str(record), failed=str(failed)))
    (inner / "pytest.ini").write_text(
        "[pytest]\n"
        f"tmp_path_retention_policy = {pytestconfig.getini('tmp_path_retention_policy')}\n"
        f"tmp_path_retention_count = {pytestconfig.getini('tmp_path_retention_count')}\n"
    )
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         f"--basetemp={tmp_path / 'base'}", str(inner)],
        cwd=inner, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 1, run.stdout + run.stderr
    assert not Path(record.read_text()).exists(), "a passed test's tmp_path was kept"
    assert (Path(failed.read_text()) / "kept.txt").exists(), "a failed test's tmp_path was deleted"
