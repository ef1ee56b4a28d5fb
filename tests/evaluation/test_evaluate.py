"""Evaluation and comparison of predictions files: every plot and the report per task kind, overlays,
the evaluator registry, and one clear sentence for each kind of bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from recoml.errors import ConfigError, DataError
from recoml.evaluation import EVALUATORS, Evaluator, SectionResult, evaluate_files, register
from recoml.evaluation.registry import PlotSink
from tests.evaluation_helpers import load_json, write_predictions
from tests.helpers import REPO

#: Figures each kind must produce (file stems without the section prefix).
EXPECTED = {
    "classification": [
        "roc_e_vs_mu",
        "roc_e_vs_gamma",
        "discriminant_e_vs_mu",
        "discriminant_e_vs_gamma",
        "efficiency_vs_energy_e_vs_mu",
        "efficiency_vs_dwall_e_vs_mu",
        "efficiency_vs_energy_e_vs_gamma",
        "efficiency_vs_dwall_e_vs_gamma",
        "identification_vs_energy",
        "identification_vs_dwall",
        "confusion",
    ],
    "energy": [
        "residual_fractional",
        "residual_momentum",
        *(
            f"resolution_vs_{axis}_{r}"
            for r in ("fractional", "momentum")
            for axis in ("energy", "dwall", "towall")
        ),
        "resolution_vs_energy_by_species_fractional",
        "reco_vs_true_energy",
    ],
    "vertex": [
        *(f"residual_{r}" for r in ("total", "longitudinal", "transverse")),
        *(
            f"resolution_vs_{axis}_{r}"
            for r in ("total", "longitudinal", "transverse")
            for axis in ("energy", "dwall", "towall")
        ),
        "resolution_vs_energy_by_species_total",
        *(f"reco_vs_true_vertex_{c}" for c in "xyz"),
    ],
    "direction": [
        *(f"residual_{r}" for r in ("angle", "polar", "azimuth")),
        *(
            f"resolution_vs_{axis}_{r}"
            for r in ("angle", "polar", "azimuth")
            for axis in ("energy", "dwall", "towall")
        ),
        "resolution_vs_energy_by_species_angle",
        *(f"reco_vs_true_direction_{c}" for c in "xyz"),
    ],
    "hit_classification": ["roc", "scores", "efficiency_purity"],
}
MAIN = {"classification": "accuracy", "energy": "resolution_fractional", "vertex": "resolution_total_cm",
        "direction": "resolution_angle_deg", "hit_classification": "auc"}  # fmt: skip


def _assert_written(out: Path, section: str, stems: list[str]) -> None:
    report = (out / "report.md").read_text()
    for stem in stems:
        for fmt in ("png", "pdf"):
            f = out / "plots" / f"{section}_{stem}.{fmt}"
            assert f.is_file() and f.stat().st_size > 1000, f
        assert f"plots/{section}_{stem}.png" in report and f"plots/{section}_{stem}.pdf" in report


@pytest.mark.parametrize("kind", list(EXPECTED))
def test_evaluate_writes_every_plot_report_and_metrics(tmp_path: Path, kind: str) -> None:
    path = write_predictions(tmp_path / "run" / "predictions.h5", kind)
    result = evaluate_files([path], tmp_path / "eval", labels=["cnn"])
    section = next(iter(result.sections))
    _assert_written(tmp_path / "eval", section, EXPECTED[kind])
    assert len(result.figures) == len(EXPECTED[kind])
    metrics = load_json(tmp_path / "eval" / "metrics.json")
    values = metrics["sections"][section]["metrics"]["cnn"]
    assert MAIN[kind] in values and values[MAIN[kind]] is not None
    assert f"| {MAIN[kind]} |" in (tmp_path / "eval" / "report.md").read_text()
    assert metrics["runs"][0]["n_events"] == 400 and "resolution" in metrics["definitions"]


def test_metrics_of_synthetic_predictions_have_the_expected_values(tmp_path: Path) -> None:
    """Energies smeared by a 30% Gaussian: resolution ~ 0.30 * 0.9945 (68% quantile of |N(0, s)|),
    bias ~ 0."""
    energy = write_predictions(tmp_path / "e.h5", "energy", n=20000, quality=1.0)
    scal = evaluate_files([energy], tmp_path / "eval_e", labels=["run"]).scalars("energy", "run")
    assert scal["resolution_fractional"] == pytest.approx(0.30 * 0.9945, rel=0.03)
    assert abs(scal["bias_fractional"]) < 0.01


def test_energy_resolution_per_species_and_momentum_hand_computed(tmp_path: Path) -> None:
    """Electrons overestimated by exactly 10 %, muons by 20 % at T = 300 MeV: per-species resolutions are
    0.1 and 0.2; the muon momentum residual is p(360)/p(300) - 1 with p = sqrt(T^2 + 2 T m_mu)."""
    n = 40
    label = np.array([1, 2] * (n // 2), dtype=np.int32)
    true = np.full(n, 300.0, dtype=np.float32)
    pred = np.where(label == 1, 330.0, 360.0).astype(np.float32)
    path = write_predictions(
        tmp_path / "e.h5",
        "energy",
        n=n,
        replace={"aux_label": label, "aux_energy": true, "true_energy": true, "pred_energy": pred},
    )
    scal = evaluate_files([path], tmp_path / "eval", labels=["run"]).scalars("energy", "run")
    assert scal["resolution_fractional/e"] == pytest.approx(0.1, rel=1e-5)
    assert scal["resolution_fractional/mu"] == pytest.approx(0.2, rel=1e-5)
    m_mu, m_e = 105.6583755, 0.51099895
    p = lambda t, m: np.sqrt(t * t + 2 * t * m)  # noqa: E731
    assert scal["bias_momentum/mu"] == pytest.approx(p(360, m_mu) / p(300, m_mu) - 1, rel=1e-5)
    assert scal["bias_momentum/e"] == pytest.approx(p(330, m_e) / p(300, m_e) - 1, rel=1e-5)
    assert "resolution_fractional/gamma" not in scal


@pytest.mark.parametrize("quantity", ["momentum", "total"])
def test_momentum_residual_follows_the_regressed_quantity(tmp_path: Path, quantity: str) -> None:
    """A network that regressed momentum: the momentum residual is the fractional one itself; one that
    regressed total energy: p = sqrt(E^2 - m^2) (not the kinetic formula). Muons, 10 % high at 400 MeV."""
    n = 20
    label = np.full(n, 2, dtype=np.int32)
    true = np.full(n, 400.0, dtype=np.float32)
    pred = np.full(n, 440.0, dtype=np.float32)
    path = write_predictions(
        tmp_path / "e.h5",
        "energy",
        n=n,
        replace={"aux_label": label, "aux_energy": true, "true_energy": true, "pred_energy": pred},
    )
    with h5py.File(path, "r+") as f:
        f.attrs["sections"] = json.dumps(
            [{"name": "energy", "kind": "energy", "prefix": "", "quantity": quantity}]
        )
    scal = evaluate_files([path], tmp_path / "eval", labels=["run"]).scalars("energy", "run")
    m_mu = 105.6583755
    expected = 0.1 if quantity == "momentum" else np.sqrt(440**2 - m_mu**2) / np.sqrt(400**2 - m_mu**2) - 1
    assert scal["bias_momentum/mu"] == pytest.approx(expected, rel=1e-5)
    assert scal["bias_fractional/mu"] == pytest.approx(0.1, rel=1e-5)


def test_vertex_resolution_is_binned_in_distance_to_wall(tmp_path: Path) -> None:
    path = write_predictions(tmp_path / "v.h5", "vertex", n=2000)
    result = evaluate_files([path], tmp_path / "eval", labels=["run"])
    metrics = load_json(tmp_path / "eval" / "metrics.json")
    table = metrics["sections"]["vertex"]["tables"]["run"]["total_vs_dwall"]
    assert sum(table["count"]) == 2000 and len(table["centers"]) == 10
    assert {"resolution_total_cm/gamma", "resolution_total_cm/e", "resolution_total_cm/mu"} <= set(
        result.scalars("vertex", "run")
    )


def test_compare_overlays_runs_on_the_same_plots_and_tables(tmp_path: Path) -> None:
    good = write_predictions(tmp_path / "cnn" / "predictions.h5", "classification", seed=1, quality=3.0)
    poor = write_predictions(tmp_path / "gnn" / "predictions.h5", "classification", seed=2, quality=0.5)
    result = evaluate_files([good, poor], tmp_path / "eval", labels=["cnn", "gnn"])
    # one figure per plot with both runs on it, not one per run
    assert len(result.figures) == len(EXPECTED["classification"])
    cnn, gnn = result.scalars("pid", "cnn"), result.scalars("pid", "gnn")
    assert cnn["e_vs_mu/auc"] > gnn["e_vs_mu/auc"] > 0.5
    assert cnn["e_vs_mu/rejection@90%"] > gnn["e_vs_mu/rejection@90%"]
    report = (tmp_path / "eval" / "report.md").read_text()
    assert "| metric | cnn | gnn |" in report and "comparison: cnn vs gnn" in report
    metrics = load_json(tmp_path / "eval" / "metrics.json")
    assert set(metrics["sections"]["pid"]["metrics"]) == {"cnn", "gnn"}
    # the same bins for both runs
    tables = metrics["sections"]["pid"]["tables"]
    assert (
        tables["cnn"]["e_vs_mu/efficiency_vs_energy"]["signal"]["centers"]
        == tables["gnn"]["e_vs_mu/efficiency_vs_energy"]["signal"]["centers"]
    )


def test_multi_task_file_is_evaluated_per_task_and_compares_with_a_single_task_run(tmp_path: Path) -> None:
    from recoml.evaluation.run import _match_sections
    from recoml.prediction import Predictions

    multi = write_predictions(tmp_path / "multi.h5", "multi")
    energy = write_predictions(tmp_path / "energy.h5", "energy", seed=5)
    sections = _match_sections([Predictions(multi)], kind=None)
    assert {k: v[0]["name"] for k, v in sections.items()} == {
        "classification": "pid",
        "energy": "energy",
        "direction": "direction",
    }
    run = Predictions(multi).section(sections["classification"][0])  # prefixes removed
    assert run.get("pred_probabilities").shape == (400, 3) and run.has("aux_energy")
    both = evaluate_files([multi, energy], tmp_path / "eval_both", labels=["multi", "energy_only"])
    assert set(both.sections) == {"energy"}  # the kind both files have
    assert set(both.sections["energy"]["results"]) == {"multi", "energy_only"}


def test_registry_accepts_a_new_kind_without_touching_the_runner(tmp_path: Path) -> None:
    @register("toy_kind")
    class ToyEvaluator(Evaluator):
        required = ("pred_energy",)
        main_metric = "mean"

        def evaluate(self, run) -> SectionResult:
            return SectionResult(scalars={"mean": float(np.mean(run.get("pred_energy")))})

        def plot(self, runs, results, sink: PlotSink, section: str) -> None:
            from recoml.plotting import Series, plot_lines

            series = [Series(r.label, np.arange(3), np.arange(3)) for r in runs]
            sink.save(plot_lines(series, "x", "y"), section, "toy", "Toy")

    try:
        path = write_predictions(tmp_path / "p.h5", "energy")
        with h5py.File(path, "r+") as f:
            f.attrs["sections"] = '[{"name": "toy", "kind": "toy_kind", "prefix": ""}]'
        result = evaluate_files([path], tmp_path / "eval", labels=["p"])
        assert result.scalars("toy", "p")["mean"] > 0
        assert (tmp_path / "eval" / "plots" / "toy_toy.pdf").is_file()
    finally:
        EVALUATORS.pop("toy_kind")


# ------------------------------------------------------------------------------------------ bad input


def test_classification_predictions_given_to_a_regression_evaluation(tmp_path: Path) -> None:
    path = write_predictions(tmp_path / "pid.h5", "classification")
    with pytest.raises(
        DataError, match=r"task 'pid'.*kind=energy needs a task of kind energy \(fields pred_energy"
    ):
        evaluate_files([path], tmp_path / "eval", kind="energy")
    with pytest.raises(ConfigError, match="unknown evaluation kind 'energie'"):
        evaluate_files([path], tmp_path / "eval", kind="energie")


def test_runs_with_nothing_in_common_cannot_be_compared(tmp_path: Path) -> None:
    a = write_predictions(tmp_path / "a.h5", "classification")
    b = write_predictions(tmp_path / "b.h5", "vertex")
    with pytest.raises(DataError, match="no task kind in common"):
        evaluate_files([a, b], tmp_path / "eval")


def test_predictions_file_missing_a_field(tmp_path: Path) -> None:
    path = write_predictions(tmp_path / "e.h5", "energy")
    with h5py.File(path, "r+") as f:
        del f["true_energy"]
    with pytest.raises(DataError, match=r"e.h5: field 'true_energy' is missing; the energy evaluation"):
        evaluate_files([path], tmp_path / "eval")


def test_empty_or_foreign_predictions_files(tmp_path: Path) -> None:
    from recoml.data.store import write_store

    empty = tmp_path / "empty.h5"
    write_store(empty, {"event_index": np.zeros(0, np.int64)}, attrs={"sections": [{"name": "pid",
                "kind": "classification", "prefix": ""}]})  # fmt: skip
    with pytest.raises(DataError, match="holds no events"):
        evaluate_files([empty], tmp_path / "eval")
    store = tmp_path / "store.h5"
    write_store(store, {"labels": np.zeros(3, np.int32)})
    with pytest.raises(DataError, match="attribute 'sections' is missing"):
        evaluate_files([store], tmp_path / "eval")
    with pytest.raises(DataError, match="does not exist"):
        evaluate_files([tmp_path / "nope.h5"], tmp_path / "eval")
    text = tmp_path / "notes.h5"
    text.write_text("not hdf5")
    with pytest.raises(DataError, match="not an HDF5 file"):
        evaluate_files([text], tmp_path / "eval")
    with pytest.raises(ConfigError, match="2 labels for 1"):
        evaluate_files([store], tmp_path / "eval", labels=["a", "b"])


def test_cli_compares_two_runs_and_refuses_an_existing_output(tmp_path: Path) -> None:
    from recoml.evaluation import evaluate
    from tests.evaluation_helpers import compose_verb

    a = write_predictions(tmp_path / "a" / "predictions.h5", "energy", seed=1)
    b = write_predictions(tmp_path / "b" / "predictions.h5", "energy", seed=2, quality=0.5)
    out = tmp_path / "report_dir"
    overrides = [f"predictions=[{a},{b}]", "labels=[cnn,gnn]", f"paths.root_dir={tmp_path}", f"output={out}"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "recoml.evaluate", *overrides]
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "report.md").is_file() and (out / "plots" / "energy_residual_fractional.png").is_file()
    assert "| metric | cnn | gnn |" in (out / "report.md").read_text()
    runs = list((tmp_path / "outputs" / "evaluate" / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "config.yaml").is_file() and (runs[0] / "metrics.json").is_file()
    # The same output again: refused before anything is computed (the entry point prints it as one line).
    with pytest.raises(DataError, match="report_dir already exists; set overwrite=true"):
        evaluate(compose_verb("evaluate", tmp_path / "run2", overrides))
    (out / "mine.h5").write_bytes(b"predictions")  # not the evaluation's: overwrite must keep it
    evaluate(compose_verb("evaluate", tmp_path / "run3", [*overrides, "overwrite=true"]))
    assert (out / "report.md").is_file()
    assert (out / "mine.h5").read_bytes() == b"predictions"


@pytest.mark.parametrize("options", ["options=null", "options={}"])
def test_cli_without_options_uses_the_evaluators_defaults(tmp_path: Path, options: str) -> None:
    from recoml.evaluation import evaluate
    from tests.evaluation_helpers import compose_verb

    pred = write_predictions(tmp_path / "a" / "predictions.h5", "energy", seed=1)
    overrides = [f"predictions=[{pred}]", f"paths.root_dir={tmp_path}", options]
    result = evaluate(compose_verb("evaluate", tmp_path / "run", overrides))
    assert result.report.is_file()


def test_a_run_directory_stands_for_its_predictions_file(tmp_path: Path) -> None:
    pred = write_predictions(tmp_path / "predict_run" / "predictions.h5", "energy")
    result = evaluate_files([tmp_path / "predict_run"], tmp_path / "eval")
    run = load_json(result.metrics)["runs"][0]
    assert run["label"] == "predict_run" and run["path"] == str(pred.resolve()) and run["n_events"] == 400
    train_run = tmp_path / "train_run"
    (train_run / "checkpoints").mkdir(parents=True)
    with pytest.raises(DataError, match="train_run is a training run without predictions.h5; make it first"):
        evaluate_files([train_run], tmp_path / "eval2")
    write_predictions(tmp_path / "multi" / "0" / "predictions.h5", "energy")
    write_predictions(tmp_path / "multi" / "1" / "predictions.h5", "energy")
    with pytest.raises(DataError, match="holds 2 predictions files"):
        evaluate_files([tmp_path / "multi"], tmp_path / "eval3")
