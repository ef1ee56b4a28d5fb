"""scripts/resolution_table.py end to end on a tiny toy store: baselines written, every kind evaluated,
every table cell read from the evaluations (docs/physics.md, issue 13 item 5)."""

from __future__ import annotations

import importlib.util
import json

import numpy as np

from tests.evaluation_helpers import store_predictions
from tests.helpers import REPO, toy_store_dir


def _script():
    path = REPO / "scripts" / "resolution_table.py"
    spec = importlib.util.spec_from_file_location("resolution_table", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_resolution_table_end_to_end(tmp_path, tmp_path_factory, capsys) -> None:
    data = toy_store_dir(tmp_path_factory.getbasetemp()) / "toy_wcte.h5"
    rows = np.arange(570, 600, dtype=np.int64)
    multi = store_predictions(tmp_path / "multi.h5", data, rows, ("classification", "energy", "direction"))
    vertex = store_predictions(tmp_path / "vertex.h5", data, rows, ("vertex",), seed=1)
    script = _script()
    out = tmp_path / "table"
    table_path = script.main([str(multi), str(vertex), "--output", str(out), "--n-calibration", "80"])
    text = table_path.read_text()
    assert text == capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    # The network's vertex (10 cm Gaussian per axis) and the classical fits, each from its evaluation.
    metrics = json.loads((out / "network1_vertex" / "metrics.json").read_text())
    assert set(results) == {"classification", "energy", "direction", "vertex"}
    assert set(results["vertex"]) == {"network", "classical"}  # the true-vertex baseline has no vertex
    assert set(results["direction"]) == {"network", "classical", "classical_true_vertex"}
    lines = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines()}
    for name, kind, metric, scale, unit, published in script.ROWS:
        cells = [c.strip() for c in lines[name].strip("|").split("|")]
        assert cells[-1] == published
        value = results[kind]["network"][metric] * scale
        assert cells[1] == script._fmt(value, unit) and cells[1] != "-"
        assert cells[2] == script._fmt(results[kind]["classical"][metric] * scale, unit)
    assert lines["vertex, mu"].split("|")[4].strip() == "-"
    vertex_mu = results["vertex"]["network"]["resolution_total_cm/mu"]
    assert 5 < vertex_mu < 40  # 68% of a 3D Gaussian of 10 cm per axis: 10 * 1.88 = 18.8 cm
    assert json.dumps(metrics).count("resolution_total_cm/mu") >= 1
    # --reuse-baselines keeps the baseline files of the same events (not rewritten), here for one kind.
    written = (out / "classical.h5").stat().st_mtime_ns
    script.main([str(vertex), "--output", str(out), "--reuse-baselines"])
    assert (out / "classical.h5").stat().st_mtime_ns == written
    assert set(json.loads((out / "results.json").read_text())) == {"vertex"}
