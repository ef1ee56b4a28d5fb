"""Tracking through the entry points: an edge classifier's checkpoint -> ``recoml.predict`` (edges, hits,
particles in the predictions file) -> ``recoml.evaluate`` (edge and track metrics in report.md and
metrics.json), agreeing with the checkpoint-only tracking report; tracker hit classification the same way;
hand-computed edge/track metrics, an event without edges, and files missing what a stage needs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from recoml.data.splits import load_splits
from recoml.data.store import open_store
from recoml.errors import DataError
from recoml.evaluation import evaluate, evaluator_for
from recoml.families.tracking.pipeline import TrackingPipeline, evaluate_tracking, iterate_store
from recoml.families.tracking.report import evaluate_checkpoint
from recoml.families.tracking.simulation import simulate_tracker_to_store
from recoml.prediction import Predictions
from recoml.prediction.reader import section_from_arrays
from recoml.prediction.run import predict
from recoml.training import train
from tests.evaluation_helpers import compose_verb
from tests.helpers import CONF_DIR, make_cfg

N_EVENTS = 20
EDGE_TRAINING = (
    "experiment=tracking/edge_classifier",
    "trainer.max_epochs=2",
    "trainer.limit_train_batches=8",
    "dataset.batch_size=2",
    "optimizer.lr=3e-3",
    "test=false",
    "dataset.simulate=null",  # the fixture's own store (20 events of 120 particles)
)


@pytest.fixture(scope="module")
def tracker_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """20 small toy tracker events (120 particles each) where dataset=toy_tracker looks for them."""
    data = tmp_path_factory.mktemp("tracker_pe_data")
    det = instantiate(OmegaConf.load(CONF_DIR / "detector" / "toy_tracker.yaml"))
    simulate_tracker_to_store(det, data / "toy_toy_tracker.h5", n_events=N_EVENTS, seed=1, n_particles=120)
    return data


@pytest.fixture(scope="module")
def edge_ckpt(tracker_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("edge_pe")
    train(make_cfg(tmp, tracker_data, list(EDGE_TRAINING)))
    return tmp / "run" / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def edge_predictions(edge_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("edge_pred") / "run"
    return predict(compose_verb("predict", run, [f"ckpt_path={edge_ckpt}", "split=test", "batch_size=1"]))


def test_predict_writes_edges_hits_and_particles_of_every_test_event_once(
    edge_predictions: Path, tracker_data: Path
) -> None:
    store_path = tracker_data / "toy_toy_tracker.h5"
    test = load_splits(tracker_data / "toy_toy_tracker_splits.npz", N_EVENTS)["test_idxs"]
    store = open_store(store_path)
    with h5py.File(edge_predictions) as f:
        index = f["event_index"][()]
        assert len(test) >= 2 and np.array_equal(index, np.sort(test))  # batch_size=1: several batches
        sections = json.loads(f.attrs["sections"])
        assert sections[0]["kind"] == "edge_classification" and sections[0]["pt_min"] == 1.0
        hits, h_off, _ = store.read(index, ["hit_particle_id", "hit_x"], ())
        assert np.array_equal(f["hit_particle_id"][()], hits["hit_particle_id"])  # store order kept
        assert np.array_equal(np.append(f["event_hits_index"][()], len(f["hit_x"])), h_off)
        e_off = np.append(f["event_edges_index"][()], len(f["edge_src"]))
        n_hits = np.diff(h_off)
        for i in range(len(index)):
            src, dst = (f[k][e_off[i] : e_off[i + 1]] for k in ("edge_src", "edge_dst"))
            assert len(src) > 0 and src.min() >= 0 and max(src.max(), dst.max()) < n_hits[i]  # event-local
        score = f["edge_score"][()]
        assert score.min() >= 0 and score.max() <= 1 and f["edge_truth"].dtype == bool
        assert not np.any(f["edge_target"][()] & ~f["edge_truth"][()])
        assert np.all(f["true_target_edges"][()] > 0)
        # Particles: one row per real particle of the event's hits.
        pid = hits["hit_particle_id"]
        n_particles = [len(np.unique(pid[a:b][pid[a:b] != 0])) for a, b in zip(h_off[:-1], h_off[1:])]
        p_off = np.append(f["event_particles_index"][()], len(f["particle_id"]))
        assert np.array_equal(np.diff(p_off), n_particles)
        assert f["particle_nhits"][()].sum() == np.count_nonzero(pid)
        assert f["hit_x"].attrs["units"] == "mm"


def test_evaluate_reports_edge_and_track_metrics_like_the_tracking_report(
    edge_predictions: Path, edge_ckpt: Path, tracker_data: Path, tmp_path: Path
) -> None:
    ev = evaluate(compose_verb("evaluate", tmp_path / "eval", [f"predictions={edge_predictions}"]))
    section = ev.sections["edge_classification"]
    assert section["kind"] == "edge_classification"
    s = ev.scalars("edge_classification", "run")
    assert s["edge_auc"] > 0.8 and s["graph_efficiency"] > 0.99 and s["edges_per_event"] > 0
    assert s["track_efficiency_double_majority"] > 0 and 0 <= s["track_fake_rate_atlas"] <= 1
    report = ev.report.read_text()
    for text in ("track_efficiency_double_majority", "edge_efficiency", "Track efficiency vs true pT"):
        assert text in report
    stems = {f.stem for f in ev.figures}
    assert {"edge_classification_roc", "edge_classification_efficiency_vs_eta"} <= stems
    assert (tmp_path / "eval" / "plots" / "edge_classification_fake_rate_vs_eta.png").is_file()
    shown = [f for f in ev.figures if f.section == "event displays"]  # best and worst event drawn
    assert {f.stem.split("_", 1)[1] for f in shown} >= {"hits", "edges", "tracks"}
    assert any("worst: " in f.caption for f in shown) and "## event displays" in ev.report.read_text()
    payload = json.loads(ev.metrics.read_text())
    tables = payload["sections"]["edge_classification"]["tables"]["run"]
    assert "efficiency_vs_pt" in tables["tracks"]["atlas"]

    # evaluate_checkpoint is the same road in one call: identical graph, scores and tracks.
    direct = evaluate_checkpoint(edge_ckpt, tracker_data / "toy_toy_tracker.h5", tmp_path / "direct")
    for key in ("efficiency", "purity", "target_purity", "graph_efficiency", "edges_per_event"):
        assert s[f"edge_{key}" if not key.startswith(("graph", "edges")) else key] == pytest.approx(
            direct["edges"][key], abs=1e-5
        )
    for style in ("double_majority", "atlas"):
        for key in ("efficiency", "fake_rate", "duplicate_rate"):
            assert s[f"track_{key}_{style}"] == pytest.approx(direct["tracks"][style][key], abs=1e-9)
    # The in-memory road (TrackingPipeline + evaluate_tracking, per-stage timings) is the same implementation.
    pipeline = TrackingPipeline.from_checkpoint(edge_ckpt)
    memory, _ = evaluate_tracking(pipeline, iterate_store(tracker_data / "toy_toy_tracker.h5", "test"))
    edge_keys = ("efficiency", "purity", "graph_efficiency", "edges_per_event", "auroc")
    for key in edge_keys:
        assert memory["edges"][key] == pytest.approx(direct["edges"][key], abs=1e-5)
    for style in ("double_majority", "atlas"):
        for key in ("efficiency", "fake_rate", "duplicate_rate"):
            assert memory["tracks"][style][key] == pytest.approx(direct["tracks"][style][key], abs=1e-9)
    assert memory["tracks"]["trackml_score"] == pytest.approx(direct["tracks"]["trackml_score"], abs=1e-6)
    assert set(memory["timing"]) == {"graph_construction", "edge_classification", "track_building"}

    # Walkthrough building and a comparison of two runs overlay on the same figures.
    copy = tmp_path / "other" / "predictions.h5"
    copy.parent.mkdir()
    shutil.copyfile(edge_predictions, copy)
    both = evaluate(
        compose_verb(
            "evaluate",
            tmp_path / "cmp",
            [f"predictions=[{edge_predictions},{copy}]", "labels=[a,b]", "options.track_method=walkthrough"],
        )
    )
    a, b = (both.scalars("edge_classification", k) for k in ("a", "b"))
    assert a == b and a["track_efficiency_double_majority"] > 0
    assert json.loads(both.metrics.read_text())["sections"]["edge_classification"]["tables"]["a"][
        "track_building"
    ] == ("walkthrough")


def _hand_section(edges: bool = True) -> object:
    """Two events. Event 0: particle 1 on hits 0-2 (pT 2 GeV), particle 2 on hit 3 (one hit: no target);
    edges 0->1, 1->2 (target, score 0.9) and 2->3 (false, 0.2). Event 1: particle 3 on 3 hits, no edges."""
    pid = np.array([1, 1, 1, 2, 3, 3, 3])
    r = np.array([30.0, 70.0, 115.0, 170.0, 30.0, 70.0, 115.0])
    arrays = {
        "event_index": np.array([0, 1]),
        "event_hits_index": np.array([0, 4]),
        "hit_x": r,
        "hit_y": np.zeros(7),
        "hit_z": r * 0.1,
        "hit_particle_id": pid,
        "hit_tpx": np.full(7, 2.0),
        "hit_tpy": np.zeros(7),
        "hit_tpz": np.full(7, 0.2),
        "event_edges_index": np.array([0, 3 if edges else 0]),
        "edge_src": np.array([0, 1, 2])[: 3 if edges else 0],
        "edge_dst": np.array([1, 2, 3])[: 3 if edges else 0],
        "edge_score": np.array([0.9, 0.9, 0.2])[: 3 if edges else 0],
        "edge_truth": np.array([True, True, False])[: 3 if edges else 0],
        "edge_target": np.array([True, True, False])[: 3 if edges else 0],
        "true_target_edges": np.array([2, 2]),
    }
    info = {"name": "edge_classification", "kind": "edge_classification", "prefix": "", "threshold": 0.5}
    return section_from_arrays(arrays, info | {"pt_min": 1.0, "min_hits": 3, "bfield": 2.0}, "hand")


def test_edge_and_track_metrics_on_a_hand_built_case_and_an_event_without_edges() -> None:
    evaluator = evaluator_for("edge_classification", module="recoml.families.tracking.evaluation")
    run = _hand_section()
    evaluator.check(run)
    s = evaluator.evaluate(run).scalars
    assert s["edge_efficiency"] == 1.0 and s["edge_purity"] == 1.0 and s["edge_auc"] == 1.0
    assert s["graph_efficiency"] == 0.5 and s["edges_per_event"] == 1.5  # 2 of 4 truth-target edges
    # One track (hits 0-2) matches particle 1; particle 3 has no edges: efficiency 1 / 2, nothing fake.
    assert s["n_tracks"] == 1 and s["n_target_particles"] == 2
    assert s["track_efficiency_double_majority"] == 0.5 and s["track_efficiency_atlas"] == 0.5
    assert s["track_fake_rate_double_majority"] == 0.0 and s["track_duplicate_rate_atlas"] == 0.0

    empty = evaluator.evaluate(_hand_section(edges=False)).scalars
    for key in ("edge_efficiency", "edge_purity", "edge_auc", "graph_efficiency", "n_tracks"):
        assert empty[key] == 0.0
    assert empty["track_efficiency_double_majority"] == 0.0 and empty["track_fake_rate_atlas"] == 0.0


def test_a_file_without_edges_or_truth_is_refused_with_what_is_missing(
    edge_predictions: Path, tmp_path: Path
) -> None:
    no_edges = tmp_path / "no_edges" / "predictions.h5"
    no_edges.parent.mkdir()
    shutil.copyfile(edge_predictions, no_edges)
    with h5py.File(no_edges, "r+") as f:
        for name in [k for k in f if k.startswith("edge_")] + ["event_edges_index"]:
            del f[name]
    with pytest.raises(DataError, match="event_edges_index"):
        evaluate(compose_verb("evaluate", tmp_path / "e1", [f"predictions={no_edges}"]))
    no_truth = tmp_path / "no_truth" / "predictions.h5"
    no_truth.parent.mkdir()
    shutil.copyfile(edge_predictions, no_truth)
    with h5py.File(no_truth, "r+") as f:
        del f["edge_truth"], f["hit_tpz"]
    with pytest.raises(DataError, match=r"without truth.*edge_truth.*hit_tpz"):
        evaluate(compose_verb("evaluate", tmp_path / "e2", [f"predictions={no_truth}"]))
    # A tracking file asked for another kind names what that kind needs.
    with pytest.raises(DataError, match="kind=hit_classification"):
        evaluate(
            compose_verb(
                "evaluate", tmp_path / "e3", [f"predictions={edge_predictions}", "kind=hit_classification"]
            )
        )
    assert Predictions(edge_predictions).kinds == ["edge_classification"]


def test_tracker_hit_classification_through_predict_and_evaluate(tracker_data: Path, tmp_path: Path) -> None:
    train(
        make_cfg(
            tmp_path / "hits",
            tracker_data,
            [
                "experiment=tracking/hit_classification",
                "dataset.simulate=null",
                "trainer.max_epochs=1",
                "dataset.batch_size=2",
                "test=false",
            ],
        )
    )
    ckpt = tmp_path / "hits" / "run" / "checkpoints" / "last.ckpt"
    out = predict(compose_verb("predict", tmp_path / "pred", [f"ckpt_path={ckpt}"]))
    with h5py.File(out) as f:
        score, signal = f["hit_pred_hit_probability"][()], f["hit_true_hit_signal"][()]
        index, n_hits = f["event_index"][()], len(score)
        assert len(signal) == n_hits == open_store(tracker_data / "toy_toy_tracker.h5").counts()[index].sum()
        assert 0 < signal.mean() < 1
    ev = evaluate(compose_verb("evaluate", tmp_path / "eval", [f"predictions={out}"]))
    s = ev.scalars("hit_classification", "pred")
    assert 0 <= s["auc"] <= 1 and "efficiency" in s


def test_rank_files_of_edge_predictions_merge_sorted_by_event(tmp_path: Path) -> None:
    """What DDP ranks write (edges, hits, particles per event) merges into one file, events sorted."""
    from recoml.data.store import StoreWriter
    from recoml.prediction.writer import merge_rank_files

    def rank(path: Path, events: list[int]) -> Path:
        n = len(events)
        with StoreWriter(path, object_types=("hits", "edges", "particles")) as w:
            w.append(
                {
                    "event_index": np.array(events),
                    "event_hits_index": np.arange(n) * 2,
                    "hit_x": np.repeat(np.array(events, float), 2),
                    "event_edges_index": np.arange(n),
                    "edge_src": np.zeros(n, np.int32),
                    "edge_score": np.array(events, np.float32) / 10,
                    "event_particles_index": np.arange(n),
                    "particle_id": np.array(events, np.int64) + 100,
                }
            )
        return path

    ranks = [rank(tmp_path / "r0.h5", [4, 1]), rank(tmp_path / "r1.h5", [3, 0])]
    out = merge_rank_files(ranks, tmp_path / "predictions.h5", {"sections": "[]"}, {})
    with h5py.File(out) as f:
        assert list(f["event_index"][()]) == [0, 1, 3, 4]
        assert list(f["hit_x"][()]) == [0, 0, 1, 1, 3, 3, 4, 4]
        assert np.allclose(f["edge_score"][()], [0.0, 0.1, 0.3, 0.4])
        assert list(f["particle_id"][()]) == [100, 101, 103, 104]
        assert list(f["event_edges_index"][()]) == [0, 1, 2, 3]
