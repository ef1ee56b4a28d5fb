"""The tutorial notebooks run from top to bottom (so they never rot), and are committed with their outputs
(plots visible on the repository page), small enough to browse."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import REPO

NOTEBOOKS = REPO / "notebooks"
#: A committed notebook stays browsable: outputs included, no widget state, under this size.
MAX_BYTES = 1_000_000


def _execute(name: str, work: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, list[dict]]:
    """Run ``notebooks/<name>`` in ``work``; its printed text and its PNG outputs."""
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("RECOML_TUTORIAL_DIR", str(work))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(
        nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(work)}}
    ).execute()
    outputs = [o for cell in nb.cells for o in cell.get("outputs", [])]
    text = "".join(o.get("text", "") for o in outputs) + "".join(
        o.get("data", {}).get("text/plain", "") for o in outputs
    )
    return text, [o for o in outputs if "image/png" in o.get("data", {})]


@pytest.mark.parametrize("name", ["tutorial.ipynb", "tracking.ipynb"])
def test_notebook_is_committed_with_its_outputs(name: str) -> None:
    import nbformat

    path = NOTEBOOKS / name
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code), "every code cell executed, in order"
    images = [o for c in code for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 3, "plots visible on the repository page"
    assert not any(o.get("output_type") == "error" for c in code for o in c.get("outputs", []))
    assert "widgets" not in nb.metadata and path.stat().st_size < MAX_BYTES


@pytest.mark.slow
def test_tutorial_notebook_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text, images = _execute("tutorial.ipynb", tmp_path, monkeypatch)
    assert "event_index" in text and "pred_probabilities" in text
    # ROC, efficiency vs energy, confusion matrix, two event displays, training curves
    assert len(images) == 6
    assert "best: p(" in text or "worst: p(" in text
    assert (tmp_path / "evaluation" / "report.md").is_file()
    assert (tmp_path / "export_run" / "model.int8.onnx").is_file()


@pytest.mark.slow
def test_tracking_notebook_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text, images = _execute("tracking.ipynb", tmp_path, monkeypatch)
    assert "graph_efficiency" in text and "track_efficiency_double_majority" in text
    # training curves, edge ROC, track efficiency vs pT, the event display's views
    assert len(images) >= 5
    assert (tmp_path / "evaluation" / "report.md").is_file()
    assert sorted((tmp_path / "display_run" / "displays").glob("*_3d.html")) == []  # html=false
