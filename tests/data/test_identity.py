"""Data identity (issue 12): stores, detectors and checkpoints that do not belong together are refused in
one sentence before anything is written; models do not score the events they were trained on; runs over
different events are not overlaid silently; ``ckpt_path=last`` resumes only a run of the same kind."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from recoml.data.identity import (
    Fingerprint,
    check_store_detector,
    detector_fingerprint,
    event_keys,
    fingerprint_positions,
)
from recoml.data.store import open_store, write_store
from recoml.errors import ConfigError, DataError
from recoml.evaluation.run import evaluate_files
from recoml.families.water_cherenkov.to_store import simulate_to_store
from recoml.prediction import Predictions
from recoml.prediction.run import predict
from recoml.training import resolve_checkpoint, train
from tests.evaluation_helpers import compose_verb, write_predictions
from tests.helpers import CONF_DIR, REPO, compose_train, make_cfg

WCTE = OmegaConf.load(CONF_DIR / "detector" / "wcte.yaml")
IWCD = OmegaConf.load(CONF_DIR / "detector" / "iwcd.yaml")


def _predict(run: Path, ckpt: Path, *overrides: str) -> Path:
    return predict(compose_verb("predict", run, [f"ckpt_path={ckpt}", *overrides]))


def _nothing_written(run: Path) -> bool:
    """No output of the verb in its run directory (Hydra's own .hydra folder and the run lock aside)."""
    return not run.exists() or not [p for p in run.iterdir() if p.name not in (".hydra", ".recoml-run.lock")]


# ------------------------------------------------------------------------------------------ fingerprints


def test_fingerprint_is_the_sensor_count_and_a_hash_of_rounded_positions() -> None:
    det = instantiate(WCTE)
    fp = detector_fingerprint(det)
    assert fp.n_sensors == 2014 and len(fp.positions) == 16
    # float32 and float64 copies of the same positions agree; moving one sensor by 1 mm does not
    assert fingerprint_positions(det.pmt_positions.astype(np.float64)) == fp
    moved = det.pmt_positions.copy()
    moved[7, 0] += 0.1
    assert fingerprint_positions(moved) != fp
    assert Fingerprint.parse(fp.as_attr()) == fp and Fingerprint.parse("junk") is None
    assert detector_fingerprint(instantiate(IWCD)) != fp


def test_toy_store_records_detector_fingerprint_and_conventions(toy_data: Path) -> None:
    store = open_store(toy_data / "toy_wcte.h5")
    assert store.attrs["detector_fingerprint"] == detector_fingerprint(instantiate(WCTE)).as_attr()
    assert store.attrs["time_origin"] == "vertex" and store.attrs["energy_kind"] == "kinetic"
    assert isinstance(store.attrs["event_source"], str)


def test_event_keys_identify_events_across_files_of_one_source(tmp_path: Path, toy_data: Path) -> None:
    det = instantiate(WCTE)
    small = tmp_path / "small.h5"
    simulate_to_store(det, small, n_events=30, seed=0, overwrite=True)  # the first 30 of the toy set
    big, little = open_store(toy_data / "toy_wcte.h5"), open_store(small)
    assert np.array_equal(event_keys(big, np.arange(30)), event_keys(little, np.arange(30)))
    other = tmp_path / "other_seed.h5"
    simulate_to_store(det, other, n_events=30, seed=2, overwrite=True)
    assert not np.isin(event_keys(open_store(other), np.arange(30)), event_keys(big, np.arange(600))).any()
    # a store without event ids: keyed by its content hash and row
    flat, offsets, events = big.read(np.arange(10), None, ["labels"])
    plain = tmp_path / "plain.h5"
    write_store(plain, {**flat, **events, "event_hits_index": offsets[:-1]})
    keys = event_keys(open_store(plain), np.arange(10))
    assert len(np.unique(keys)) == 10


def test_store_of_another_geometry_is_refused_in_one_sentence(toy_data: Path) -> None:
    store = open_store(toy_data / "toy_wcte.h5")
    iwcd = instantiate(IWCD)
    with pytest.raises(DataError) as err:
        check_store_detector(store.path, store.attrs, iwcd, "detector=iwcd")
    msg = str(err.value)
    assert (
        "toy_wcte.h5 was made for detector=wcte (2014 sensors" in msg
        and "detector=iwcd has 10222 sensors" in msg
    )
    assert "\n" not in msg


# ------------------------------------------------------------------------------- toy stores by geometry


def test_two_from_file_geometries_never_share_a_toy_store(tmp_path: Path, real_data: Path) -> None:
    a = shutil.copy(real_data / "geometry" / "wcte_wcsim_geofile.txt", tmp_path / "geo.txt")
    b_dir = tmp_path / "b"
    b_dir.mkdir()
    text = Path(a).read_text().replace("155.26", "155.30", 1)
    (b_dir / "geo.txt").write_text(text)  # same file name, other content
    paths = []
    for geo in (a, b_dir / "geo.txt"):
        cfg = compose_train(
            ["detector=from_file", f"detector.path={geo}", f"paths.data_dir={tmp_path}"], False
        )
        paths.append(cfg.dataset.path)
        assert (
            cfg.detector.name.startswith("geo_")
            and Path(cfg.dataset.path).name == f"toy_{cfg.detector.name}.h5"
        )
    assert paths[0] != paths[1]


# ------------------------------------------------------------------------------------------------ train


def test_train_refuses_a_store_of_another_detector(tmp_path: Path, toy_data: Path) -> None:
    store = toy_data / "toy_wcte.h5"
    cfg = make_cfg(tmp_path, toy_data, ["dataset=iwcd", "dataset.simulate=null", f"dataset.path={store}"])
    with pytest.raises(DataError, match=r"toy_wcte.h5 was made for detector=wcte .* but detector=iwcd has"):
        train(cfg)
    assert _nothing_written(tmp_path / "run")


def test_checkpoint_records_data_identity_and_training_events(toy_data: Path, pid_ckpt: Path) -> None:
    raw = torch.load(pid_ckpt, weights_only=False)
    ident = raw["recoml"]["data_identity"]
    assert ident["fingerprint"] == detector_fingerprint(instantiate(WCTE)).as_attr()
    assert ident["time_origin"] == "vertex" and ident["energy_kind"] == "kinetic" and ident["n_events"] == 600
    keys = raw["recoml_events"]["train_keys"]
    assert len(keys) == ident["n_train_events"] == 480


# ---------------------------------------------------------------------------------------------- predict


def test_predict_refuses_the_training_events_unless_allowed(tmp_path: Path, pid_ckpt: Path) -> None:
    with pytest.raises(
        DataError, match=r"480 of the 480 train events of .* are events checkpoint .* was trained on"
    ):
        _predict(tmp_path / "a", pid_ckpt, "split=train")
    assert _nothing_written(tmp_path / "a")
    out = _predict(tmp_path / "b", pid_ckpt, "split=train", "allow_training_events=true", "batch_size=64")
    attrs = Predictions(out).attrs
    assert attrs["n_training_events"] == 480 and attrs["allow_training_events"] is True
    report = evaluate_files([out], tmp_path / "eval").report.read_text()
    assert "480 of 480 events were training events" in report


def test_predict_recognises_training_events_in_another_file(tmp_path: Path, pid_ckpt: Path) -> None:
    """A smaller store of the same toy source: its own test split holds events the model trained on."""
    small = tmp_path / "data" / "small.h5"
    simulate_to_store(instantiate(WCTE), small, n_events=100, seed=0, overwrite=True)
    with pytest.raises(DataError, match=r"of the 10 test events of .*small.h5 are events checkpoint"):
        _predict(tmp_path / "a", pid_ckpt, "dataset=from_file", f"dataset.path={small}")
    assert _nothing_written(tmp_path / "a")


def test_predict_refuses_a_store_of_another_geometry_or_convention(
    tmp_path: Path, toy_data: Path, pid_ckpt: Path
) -> None:
    source = open_store(toy_data / "toy_wcte.h5")
    flat, offsets, events = source.read(np.arange(40), None, ["labels", "energies", "positions"])
    arrays = {**flat, **events, "event_hits_index": offsets[:-1]}
    moved = instantiate(WCTE).pmt_positions.copy()
    moved[0] += 1.0
    other = tmp_path / "moved.h5"
    write_store(
        other,
        arrays,
        attrs={"detector": "wcte", "detector_fingerprint": fingerprint_positions(moved).as_attr()},
    )
    with pytest.raises(
        DataError, match=r"moved.h5 was made for detector=wcte \(2014 sensors, positions \w+\) but checkpoint"
    ):
        _predict(tmp_path / "a", pid_ckpt, "dataset=from_file", f"dataset.path={other}", "split=all")
    trig = tmp_path / "trigger.h5"
    write_store(trig, arrays, attrs={"time_origin": "trigger"})
    with pytest.raises(
        DataError, match=r"trigger.h5 has time_origin=trigger .* trained on data with time_origin=vertex"
    ):
        _predict(tmp_path / "b", pid_ckpt, "dataset=from_file", f"dataset.path={trig}", "split=all")
    assert _nothing_written(tmp_path / "a") and _nothing_written(tmp_path / "b")


def test_export_refuses_a_store_of_another_geometry(tmp_path: Path, toy_data: Path, pid_ckpt: Path) -> None:
    from recoml.exporting.run import export

    source = open_store(toy_data / "toy_wcte.h5")
    flat, offsets, events = source.read(np.arange(20), None, ["labels"])
    moved = instantiate(WCTE).pmt_positions.copy()
    moved[3] += 1.0
    other = tmp_path / "moved.h5"
    fp = fingerprint_positions(moved).as_attr()
    write_store(
        other, {**flat, **events, "event_hits_index": offsets[:-1]}, attrs={"detector_fingerprint": fp}
    )
    overrides = [f"ckpt_path={pid_ckpt}", "dataset=from_file", f"dataset.path={other}", "split=all"]
    with pytest.raises(DataError, match=r"moved.h5 was made for another detector \(2014 sensors"):
        export(compose_verb("export", tmp_path / "run", overrides))
    assert _nothing_written(tmp_path / "run")


def test_cli_refusal_is_one_line_and_exit_code_2(tmp_path: Path, pid_ckpt: Path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    run = tmp_path / "cli"
    cmd = [
        sys.executable,
        "-m",
        "recoml.predict",
        f"ckpt_path={pid_ckpt}",
        "split=train",
        f"hydra.run.dir={run}",
    ]
    result = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "allow_training_events=true" in errors[0]
    assert "Traceback" not in result.stderr and not (run / "predictions.h5").exists()


# --------------------------------------------------------------------------------------------- evaluate


def test_evaluate_refuses_runs_over_different_events_unless_told(tmp_path: Path) -> None:
    a = write_predictions(tmp_path / "a" / "predictions.h5", "classification", n=300, seed=1)
    b = write_predictions(tmp_path / "b" / "predictions.h5", "classification", n=200, seed=2)
    with pytest.raises(DataError, match=r"hold predictions for different events.* require_same_events=false"):
        evaluate_files([a, b], tmp_path / "eval")
    assert not (tmp_path / "eval").exists()
    result = evaluate_files([a, b], tmp_path / "eval2", require_same_events=False)
    assert "runs over different events" in result.report.read_text()


# ------------------------------------------------------------------------------------------ ckpt=last


def _fake_run(root: Path, name: str, model: str, age: float) -> Path:
    run = root / "train" / "runs" / name
    (run / "checkpoints").mkdir(parents=True)
    cfg = {
        "experiment_name": "train_wcte_pid",
        "model": {"name": model},
        "task": {"name": "pid"},
        "detector": {"name": "wcte"},
    }
    (run / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    ckpt = run / "checkpoints" / "last.ckpt"
    ckpt.write_bytes(b"x")
    os.utime(ckpt, (age, age))
    return ckpt


def test_ckpt_last_only_resumes_runs_of_the_same_identity(tmp_path: Path, caplog) -> None:
    cfg = compose_train([f"paths.log_dir={tmp_path}", "model=gnn"], False)
    cfg.paths.output_dir = str(tmp_path / "new")
    _fake_run(tmp_path, "old_gnn", "gnn", 1_000)
    _fake_run(tmp_path, "newer_resnet", "resnet18", 2_000)
    with caplog.at_level(logging.INFO, logger="recoml.training"):
        chosen = resolve_checkpoint("last", cfg)
    assert "old_gnn" in chosen and "ckpt_path=last: resuming" in caplog.text
    cfg.model.name = "pointnet"
    with pytest.raises(
        ConfigError, match=r"no last.ckpt under .* from a run with experiment_name=.*model.name=pointnet"
    ):
        resolve_checkpoint("last", cfg)


def test_resume_from_a_checkpoint_of_another_model_is_one_sentence(
    tmp_path: Path, toy_data: Path, pid_ckpt: Path
) -> None:
    cfg = make_cfg(tmp_path, toy_data, ["model=gnn", f"ckpt_path={pid_ckpt}"])
    with pytest.raises(ConfigError, match=r"was trained for model=resnet18, this run is model=gnn"):
        train(cfg)
    assert _nothing_written(tmp_path / "run")


def test_converted_store_declares_the_mapping_conventions(tmp_path: Path) -> None:
    from recoml.conversion.mapping import parse_mapping
    from recoml.conversion.pipeline import conversion_identity

    mapping = parse_mapping(OmegaConf.load(CONF_DIR / "convert" / "flat_wcsim_tubes.yaml"))
    det = instantiate(WCTE)
    attrs = conversion_identity(mapping, det)
    assert attrs["time_origin"] == "trigger" and attrs["energy_kind"] == "total"
    assert attrs["detector_fingerprint"] == detector_fingerprint(det).as_attr()
    bad = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "convert" / "flat_wcsim_tubes.yaml"))
    bad["energy_kind"] = "kinetik"
    with pytest.raises(ConfigError, match=r"energy_kind must be one of \['kinetic', 'total', 'momentum'\]"):
        parse_mapping(bad)
