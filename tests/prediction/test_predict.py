"""``python -m recoml.predict``: every event of a split exactly once (also on 2 DDP ranks), outputs in
physical units with their truth and provenance, and one clear sentence for each kind of bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from recoml import load_model
from recoml.data.dataset import EventDataset
from recoml.data.splits import load_splits
from recoml.data.store import open_store, write_store
from recoml.errors import ConfigError, DataError
from recoml.metrics.physics import distance_to_wall
from recoml.prediction import Predictions
from recoml.prediction.run import predict
from tests.evaluation_helpers import compose_verb
from tests.helpers import REPO


def _predict(tmp_path: Path, ckpt: Path, *overrides: str) -> Path:
    return predict(compose_verb("predict", tmp_path / "run", [f"ckpt_path={ckpt}", *overrides]))


def test_predict_writes_each_test_event_once_with_truth_and_provenance(
    tmp_path: Path, toy_data: Path, pid_ckpt: Path
) -> None:
    out = _predict(tmp_path, pid_ckpt, "batch_size=16")
    assert out == tmp_path / "run" / "predictions.h5" and (tmp_path / "run" / "config.yaml").is_file()
    store = toy_data / "toy_wcte.h5"
    test = load_splits(toy_data / "toy_wcte_splits.npz", 600)["test_idxs"]
    with h5py.File(out) as f:
        index = f["event_index"][()]
        probs = f["pred_probabilities"][()]
        assert np.array_equal(index, np.sort(test))  # every test event once, sorted by event index
        assert np.allclose(probs.sum(1), 1.0, atol=1e-5)
        assert f["pred_probabilities"].attrs["class_names"] == '["gamma", "e", "mu"]'
        labels = open_store(store).array("labels")[index]
        assert np.array_equal(f["true_labels"][()], labels)  # gamma 0, e 1, mu 2 are classes 0, 1, 2
        positions = open_store(store).array("positions")[index].reshape(-1, 3)
        assert np.allclose(f["aux_vertex"][()], positions)
        assert np.allclose(f["aux_dwall"][()], distance_to_wall(positions, 155.26, 156.0), atol=1e-3)
        assert np.allclose(f["aux_energy"][()], open_store(store).array("energies")[index, 0])
        assert f["aux_energy"].attrs["units"] == "MeV"
        assert set(f) >= {"aux_direction", "aux_towall", "aux_label"}
    pred = Predictions(out)
    ckpt = torch.load(pid_ckpt, weights_only=False)
    assert pred.attrs["provenance"] == ckpt["recoml"] and pred.attrs["task_kind"] == "classification"
    assert pred.attrs["checkpoint"] == str(pid_ckpt.resolve()) and pred.attrs["split"] == "test"
    # the numbers are the model's
    model = load_model(str(pid_ckpt))
    batch = EventDataset(store, indices=index[:8], target_fields=("labels",))[list(range(8))]
    with torch.no_grad():
        expected = model.task.predict(model(batch))["probabilities"].numpy()
    assert np.allclose(probs[:8], expected, atol=1e-5)


def test_hit_classification_predictions_are_per_hit_with_offsets(
    tmp_path: Path, toy_data: Path, hits_ckpt: Path
) -> None:
    out = _predict(tmp_path, hits_ckpt, "split=val")
    store = open_store(toy_data / "toy_wcte.h5")
    with h5py.File(out) as f:
        index = f["event_index"][()]
        score = f["hit_pred_hit_probability"][()]
        truth = f["hit_true_hit_signal"][()]
        counts = np.diff(np.append(f["event_hits_index"][()], len(score)))
    flat, offsets, _ = store.read(index, ["hit_parent"], [])
    assert np.array_equal(counts, np.diff(offsets))
    assert np.array_equal(truth, (flat["hit_parent"] >= 0).astype(np.float32))
    assert ((score >= 0) & (score <= 1)).all()
    assert Predictions(out).sections[0] == {"name": "hit_classification", "kind": "hit_classification",
                                            "evaluator": "recoml.evaluation", "prefix": "",
                                            "threshold": 0.5}  # fmt: skip


def test_rank_files_merge_sorted_by_event_with_their_hits(tmp_path: Path) -> None:
    """The merge rank zero does after a DDP prediction: shuffled shards in, sorted rows with the right hits
    out; an event predicted twice is refused."""
    from recoml.data.store import StoreWriter
    from recoml.prediction.writer import merge_rank_files

    rng = np.random.default_rng(0)
    events = rng.permutation(50)
    counts = rng.integers(0, 6, 50)  # hits per event (by event index), some events without hits
    shards = [events[:20], events[20:]]
    ranks = []
    for r, shard in enumerate(shards):
        ranks.append(tmp_path / f".p.rank{r}.h5")
        with StoreWriter(ranks[-1], object_types=("hits",)) as writer:
            for chunk in np.array_split(shard, 3):
                n = counts[chunk]
                writer.append(
                    {
                        "event_index": chunk,
                        "pred_x": chunk * 10.0,
                        "event_hits_index": np.r_[0, np.cumsum(n)[:-1]],
                        "hit_pred_y": np.repeat(chunk, n).astype(np.float32),
                    }
                )
    out = merge_rank_files(ranks, tmp_path / "p.h5", {"sections": []}, {"pred_x": {"units": "cm"}})
    with h5py.File(out) as f:
        assert np.array_equal(f["event_index"][()], np.arange(50))
        assert np.array_equal(f["pred_x"][()], np.arange(50) * 10.0) and f["pred_x"].attrs["units"] == "cm"
        assert np.array_equal(f["hit_pred_y"][()], np.repeat(np.arange(50), counts))
        assert np.array_equal(f["event_hits_index"][()], np.r_[0, np.cumsum(counts)[:-1]])
    assert not any(p.exists() for p in ranks)
    for r, shard in enumerate([events[:30], events[20:]]):  # events[20:30] on both ranks
        with StoreWriter(ranks[r], object_types=()) as writer:
            writer.append({"event_index": shard, "pred_x": shard * 1.0})
    with pytest.raises(DataError, match=r"was predicted 2 times \(10 duplicates across ranks\)"):
        merge_rank_files(ranks, tmp_path / "q.h5", {}, {})
    assert not (tmp_path / "q.h5").exists()


def test_predict_on_two_ddp_ranks_gives_every_event_exactly_once(
    tmp_path: Path, toy_data: Path, pid_ckpt: Path
) -> None:
    """Two CPU processes over gloo (trainer=ddp_sim): each predicts its shard, rank zero merges."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    overrides = ["trainer=ddp_sim", "split=val", "batch_size=16", f"paths.root_dir={tmp_path}"]
    cmd = [sys.executable, "-m", "recoml.predict", f"ckpt_path={pid_ckpt}", *overrides]
    cmd.append(f"hydra.run.dir={tmp_path / 'ddp'}")
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-4000:]
    out = tmp_path / "ddp" / "predictions.h5"
    val = load_splits(toy_data / "toy_wcte_splits.npz", 600)["val_idxs"]
    with h5py.File(out) as f:
        index = f["event_index"][()]
        probs = f["pred_probabilities"][()]
    assert np.array_equal(index, np.sort(val))  # every event once: none lost, none duplicated by padding
    assert sorted(p.name for p in (tmp_path / "ddp").glob("*.h5")) == ["predictions.h5"]  # rank files gone
    single = _predict(tmp_path / "single", pid_ckpt, "split=val")
    with h5py.File(single) as f:
        assert np.array_equal(f["event_index"][()], index)
        assert np.allclose(f["pred_probabilities"][()], probs, atol=1e-5)


# ------------------------------------------------------------------------------------------ bad input


def test_checkpoint_and_dataset_of_another_detector(tmp_path: Path, pid_ckpt: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"trained for detector=wcte; dataset=toy_iwcd is for detector=iwcd"
    ):
        _predict(tmp_path, pid_ckpt, "dataset=iwcd")


def test_store_of_another_detector_or_without_the_features(
    tmp_path: Path, toy_data: Path, pid_ckpt: Path
) -> None:
    source = open_store(toy_data / "toy_wcte.h5")
    flat, offsets, events = source.read(np.arange(40), None, ["labels", "energies", "positions"])
    arrays = {**flat, **events, "event_hits_index": offsets[:-1]}
    other = tmp_path / "hk.h5"
    write_store(other, arrays, attrs={"detector": "hk"})
    with pytest.raises(
        DataError,
        match=r"hk.h5 holds hk events .* \(model=resnet18, task=pid, detector=wcte\) is detector=wcte",
    ):
        _predict(tmp_path / "a", pid_ckpt, "dataset=from_file", f"dataset.path={other}", "split=all")
    no_time = tmp_path / "no_time.h5"
    write_store(no_time, {k: v for k, v in arrays.items() if k != "hit_time"})
    with pytest.raises(DataError, match=r"lacks the field\(s\) \['hit_time'\] that checkpoint"):
        _predict(tmp_path / "b", pid_ckpt, "dataset=from_file", f"dataset.path={no_time}", "split=all")
    # a store without detector attributes but with the fields is fine
    plain = tmp_path / "plain.h5"
    write_store(plain, arrays)
    out = _predict(tmp_path / "c", pid_ckpt, "dataset=from_file", f"dataset.path={plain}", "split=all")
    assert Predictions(out).n_events == 40


def test_existing_output_needs_overwrite(tmp_path: Path, pid_ckpt: Path) -> None:
    target = tmp_path / "preds.h5"
    target.write_text("old")
    with pytest.raises(DataError, match=r"preds.h5 already exists; set overwrite=true"):
        _predict(tmp_path / "a", pid_ckpt, f"output={target}")
    _predict(tmp_path / "b", pid_ckpt, f"output={target}", "overwrite=true")
    assert Predictions(target).n_events == 60


def test_bad_checkpoint_or_split(tmp_path: Path, pid_ckpt: Path) -> None:
    with pytest.raises(ConfigError, match="no checkpoint at"):
        _predict(tmp_path / "a", tmp_path / "missing.ckpt")
    junk = tmp_path / "junk.ckpt"
    torch.save({"weights": 1}, junk)
    with pytest.raises(DataError, match="not a recoml checkpoint"):
        _predict(tmp_path / "b", junk)
    with pytest.raises(ConfigError, match="split must be one of"):
        _predict(tmp_path / "c", pid_ckpt, "split=validation")


def test_a_training_run_directory_stands_for_its_best_checkpoint(
    tmp_path: Path, pid_ckpt: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    run_dir = pid_ckpt.parent.parent
    best = torch.load(pid_ckpt, weights_only=False)["callbacks"]
    (recorded,) = [s["best_model_path"] for s in best.values() if s.get("monitor") == "val/loss"]
    assert Path(recorded).name != "last.ckpt"
    with caplog.at_level(logging.INFO, logger="recoml.io.checkpoint"):
        out = _predict(tmp_path, run_dir)
    assert Predictions(out).attrs["checkpoint"] == str(Path(recorded).resolve())
    assert f"the best checkpoint {recorded} (val/loss = " in caplog.text
    empty = tmp_path / "empty_run"
    (empty / "checkpoints").mkdir(parents=True)
    with pytest.raises(ConfigError, match="holds no checkpoints and no record of the best"):
        _predict(tmp_path / "b", empty)
