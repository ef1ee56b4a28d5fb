"""The tutorial notebook runs from top to bottom (so it never rots)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import REPO

NOTEBOOK = REPO / "notebooks" / "tutorial.ipynb"


@pytest.mark.slow
def test_tutorial_notebook_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("RECOML_TUTORIAL_DIR", str(tmp_path))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = "".join(o.get("text", "") for cell in nb.cells for o in cell.get("outputs", []))
    assert "event_index" in outputs and "pred_probabilities" in outputs
    images = [o for cell in nb.cells for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 3  # ROC, efficiency vs energy, confusion matrix
    assert (tmp_path / "evaluation" / "report.md").is_file()
    assert (tmp_path / "export_run" / "model.int8.onnx").is_file()
