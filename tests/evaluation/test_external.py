"""WatChMaL output directories and fiTQun result files overlaid on a recoml run of the same events.

The files are written here in the layouts their programs write: WatChMaL's classifier engine
(``ReconstructionEngine.inference``: ``np.save(dump_path + key + ".npy")`` for softmax, labels and indices,
rows in the order the test loader (or the DDP gather) produced them; ``<run>/.hydra/config.yaml`` holding
``engine.label_set``), and fiTQun's ROOT tree ``fiTQun`` with ``fq1rnll[10][7]`` (-ln L per sub-event and
hypothesis: 1 electron, 2 muon) and ``fqpi0nll[2]``, as WatChMaL's ``analysis.read.FiTQunOutput`` reads
them. The expected AUCs are computed here independently (Mann-Whitney U, scipy) from the files' own
discriminators: WatChMaL's ``p_e / (p_e + p_mu)`` and fiTQun's ``fq1rnll[:, 0, 2] - fq1rnll[:, 0, 1]``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import uproot
from omegaconf import OmegaConf
from scipy.stats import mannwhitneyu

from recoml.data.store import write_store
from recoml.errors import ConfigError, DataError
from recoml.evaluation import evaluate_files
from tests.evaluation_helpers import load_json, write_predictions
from tests.helpers import REPO

N_STORE = 900  # events in the store the runs were predicted on
N = 300  # the test split: every third event
ROWS = np.arange(0, N_STORE, 3)
E, MU = 1, 2  # class indices of the recoml run (gamma 0, e 1, mu 2) = stored labels here


def _recoml_run(tmp_path: Path, seed: int = 0) -> tuple[Path, np.ndarray]:
    """A recoml predictions file over store rows ``ROWS`` whose truth is consistent (aux_label = label)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, N)
    logits = rng.normal(size=(N, 3)) + 2.0 * np.eye(3)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    store = write_store(tmp_path / "events.h5", {"labels": np.zeros(N_STORE, np.int32)}, overwrite=True)
    pred = write_predictions(
        tmp_path / "recoml_run" / "predictions.h5",
        "classification",
        n=N,
        replace={
            "event_index": ROWS.astype(np.int64),
            "pred_probabilities": probs.astype(np.float32),
            "true_labels": labels,
            "aux_label": labels.astype(np.int32),
        },
    )
    _set_dataset_attr(pred, store)
    return pred, labels


def _set_dataset_attr(pred: Path, store: Path) -> None:
    import h5py

    with h5py.File(pred, "r+") as f:
        f.attrs["dataset"] = str(store)


def _watchmal_run(
    root: Path, labels: np.ndarray, rows: np.ndarray = ROWS, label_set: list[int] | None = None, seed: int = 1
) -> tuple[Path, np.ndarray, np.ndarray]:
    """WatChMaL's outputs for the events ``rows`` (shuffled, as a DDP gather leaves them) with 4 softmax
    columns for label_set [0, 1, 2, 3] (gamma, e, mu, pi0; WatChMaL's default engine config)."""
    rng = np.random.default_rng(seed)
    label_set = label_set or [0, 1, 2, 3]
    order = rng.permutation(len(rows))
    truth = labels[order]
    logits = rng.normal(size=(len(rows), len(label_set))) + 1.5 * np.eye(len(label_set))[truth]
    softmax = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype(np.float32)
    (root / "outputs").mkdir(parents=True)
    (root / ".hydra").mkdir()
    np.save(root / "outputs" / "softmax.npy", softmax)
    np.save(root / "outputs" / "labels.npy", truth.astype(np.int64))
    np.save(root / "outputs" / "indices.npy", rows[order].astype(np.int64))
    config = {
        "engine": {"_target_": "watchmal.engine.classification.ClassifierEngine", "label_set": label_set}
    }
    (root / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(config))
    return root, softmax, truth


def _fitqun_file(path: Path, store_labels: np.ndarray, n_entries: int = N_STORE, seed: int = 2) -> np.ndarray:
    """A fiTQun tree: electrons fit better as electrons, muons as muons, by a noisy margin; returns the
    -ln L difference ``muon_nll - electron_nll`` (WatChMaL's e/mu discriminator) of every entry."""
    rng = np.random.default_rng(seed)
    nll = rng.uniform(1000, 3000, (n_entries, 10, 7)).astype(np.float32)
    margin = 40.0 * (2 * (store_labels[:n_entries] != MU) - 1) + rng.normal(0, 60, n_entries)
    nll[:, 0, 2] = nll[:, 0, 1] + margin
    pi0 = (nll[:, 0, 1] + rng.normal(20, 30, n_entries))[:, None].repeat(2, 1).astype(np.float32)
    with uproot.recreate(path) as f:
        tree = f.mktree(
            "fiTQun", {"fq1rnll": np.dtype((np.float32, (10, 7))), "fqpi0nll": np.dtype((np.float32, (2,)))}
        )
        tree.extend({"fq1rnll": nll, "fqpi0nll": pi0})
    return (nll[:, 0, 2] - nll[:, 0, 1]).astype(np.float64)


def _auc(score: np.ndarray, signal: np.ndarray) -> float:
    u = mannwhitneyu(score[signal], score[~signal]).statistic
    return float(u / (signal.sum() * (~signal).sum()))


def test_watchmal_run_is_overlaid_on_the_recoml_run(tmp_path: Path) -> None:
    pred, labels = _recoml_run(tmp_path)
    wm, softmax, truth = _watchmal_run(tmp_path / "watchmal_run", labels)
    result = evaluate_files([pred, wm], tmp_path / "eval")
    assert set(result.sections["pid"]["results"]) == {"recoml_run", "watchmal_run"}
    curves = result.sections["pid"]["results"]["watchmal_run"].curves
    assert {"e_vs_mu", "e_vs_gamma"} <= set(curves)
    # WatChMaL's own discriminator, from its files alone: p_e / (p_e + p_mu) over its e and mu events.
    sel = (truth == E) | (truth == MU)
    score = softmax[sel, E] / (softmax[sel, E] + softmax[sel, MU])
    expected = _auc(score, truth[sel] == E)
    assert result.scalars("pid", "watchmal_run")["e_vs_mu/auc"] == pytest.approx(expected, abs=1e-9)
    # accuracy over the recoml run's three classes (pi0's column left out, rows renormalized)
    accuracy = float(np.mean(softmax[:, :3].argmax(1) == truth))
    assert result.scalars("pid", "watchmal_run")["accuracy"] == pytest.approx(accuracy)
    report = result.report.read_text()
    assert "| metric | recoml_run | watchmal_run |" in report
    assert "different events" not in report
    runs = {r["label"]: r for r in load_json(result.metrics)["runs"]}
    assert runs["watchmal_run"]["model"] == "WatChMaL" and runs["watchmal_run"]["n_events"] == N


def test_watchmal_outputs_directory_itself_and_no_hydra_config(tmp_path: Path) -> None:
    """The ``outputs/`` directory given directly; without ``.hydra`` the columns are read off labels.npy."""
    pred, labels = _recoml_run(tmp_path)
    wm, _, _ = _watchmal_run(tmp_path / "wm", labels, label_set=[0, 1, 2])
    (wm / ".hydra" / "config.yaml").unlink()
    result = evaluate_files([pred, wm / "outputs"], tmp_path / "eval", labels=["cnn", "watchmal"])
    assert 0.5 < result.scalars("pid", "watchmal")["e_vs_mu/auc"] <= 1.0


def test_fitqun_file_is_overlaid_with_its_likelihood_ratio(tmp_path: Path) -> None:
    pred, labels = _recoml_run(tmp_path)
    store_labels = np.zeros(N_STORE, np.int64)
    store_labels[ROWS] = labels
    diff = _fitqun_file(tmp_path / "fitqun_out.root", store_labels)
    result = evaluate_files([pred, tmp_path / "fitqun_out.root"], tmp_path / "eval")
    fq = result.scalars("pid", "fitqun_out")
    # WatChMaL's fiTQun e/mu discriminator (muon_nll - electron_nll) on the recoml run's e and mu events
    sel = (labels == E) | (labels == MU)
    assert fq["e_vs_mu/auc"] == pytest.approx(_auc(diff[ROWS][sel], labels[sel] == E), abs=1e-9)
    assert fq["e_vs_mu/auc"] > 0.8
    # no gamma hypothesis in fiTQun's 1-ring fit: e and gamma get the same likelihood, a chance curve
    assert fq["e_vs_gamma/auc"] == pytest.approx(0.5)
    assert "| metric | recoml_run | fitqun_out |" in result.report.read_text()


def test_events_that_differ_are_refused_in_one_sentence_unless_told(tmp_path: Path) -> None:
    pred, labels = _recoml_run(tmp_path)
    fewer = ROWS[:-10]
    wm, _, _ = _watchmal_run(tmp_path / "wm", labels[:-10], rows=fewer)
    with pytest.raises(DataError, match=r"hold different events \(290 and 300 events, 290 in common\)"):
        evaluate_files([pred, wm], tmp_path / "eval")
    assert not (tmp_path / "eval").exists()
    result = evaluate_files([pred, wm], tmp_path / "eval2", require_same_events=False)
    assert result.sections["pid"]["results"]["wm"].scalars["events/e"] > 0
    assert "runs over different events (require_same_events=false)" in result.report.read_text()

    store_labels = np.zeros(N_STORE, np.int64)
    _fitqun_file(tmp_path / "short.root", store_labels, n_entries=600)
    with pytest.raises(
        DataError, match=r"short.root: tree has 600 entries and the event store .* 900 events"
    ):
        evaluate_files([pred, tmp_path / "short.root"], tmp_path / "eval3")


def test_foreign_outputs_are_refused_in_one_sentence(tmp_path: Path) -> None:
    pred, labels = _recoml_run(tmp_path)
    wm, _, _ = _watchmal_run(tmp_path / "wm", labels)
    with pytest.raises(
        ConfigError, match="is a WatChMaL or fiTQun output; put a recoml predictions file first"
    ):
        evaluate_files([wm, pred], tmp_path / "eval")
    (wm / "outputs" / "indices.npy").unlink()
    with pytest.raises(DataError, match="indices.npy is missing"):
        evaluate_files([pred, wm], tmp_path / "eval")
    # its truth is not the recoml run's: classes permuted (caught against engine.label_set) ...
    wrong, _, _ = _watchmal_run(tmp_path / "wrong", (labels + 1) % 3)
    with pytest.raises(DataError, match=r"engine.label_set \[0, 1, 2, 3\] does not match labels.npy"):
        evaluate_files([pred, wrong], tmp_path / "eval")
    # ... or other events' labels altogether (caught against the recoml run's stored labels)
    shuffled, _, _ = _watchmal_run(tmp_path / "shuffled", np.random.default_rng(5).permutation(labels))
    with pytest.raises(DataError, match=r"labels.npy: class \d holds events of stored labels"):
        evaluate_files([pred, shuffled], tmp_path / "eval")
    with uproot.recreate(tmp_path / "other.root") as f:
        f.mktree("fiTQun", {"fqnse": np.int32}).extend({"fqnse": np.ones(N_STORE, np.int32)})
    with pytest.raises(DataError, match="branch fq1rnll is missing from tree 'fiTQun'"):
        evaluate_files([pred, tmp_path / "other.root"], tmp_path / "eval")


def test_cli_refuses_other_events_with_exit_2_and_overlays_when_told(tmp_path: Path) -> None:
    from recoml.evaluation import evaluate
    from tests.evaluation_helpers import compose_verb

    pred, labels = _recoml_run(tmp_path)
    wm, _, _ = _watchmal_run(tmp_path / "wm", labels[:-1], rows=ROWS[:-1])
    overrides = [f"predictions=[{pred},{wm}]", f"paths.root_dir={tmp_path}"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "recoml.evaluate", *overrides]
    refused = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert refused.returncode == 2, refused.stderr[-2000:]
    (line,) = [x for x in refused.stderr.splitlines() if x.startswith("error:")]
    assert "hold different events" in line and "require_same_events=false" in line
    told = [*overrides, "require_same_events=false", "options.displays=false"]
    result = evaluate(compose_verb("evaluate", tmp_path / "run", told))
    assert "| recoml_run | wm |" in result.report.read_text() and (tmp_path / "run" / "plots").is_dir()
