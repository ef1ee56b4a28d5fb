"""Hostile and careless inputs: each gives one sentence (a RecomlError, exit code 2 at the entry point)
and nothing runs, nothing lies. See docs/reliability.md for the guarantee each test proves."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from recoml import load_model
from recoml.errors import ConfigError, DataError, RecomlError
from tests.evaluation_helpers import compose_verb
from tests.hostile_helpers import config_payload, kill_while_writing, pickle_payload, raw_checkpoint, savetxt


def _config_payloads(marker: Path) -> dict[str, tuple[str, object]]:
    """Config payloads: name -> (where in the stored config, what)."""
    return {
        "savetxt_in_task": ("task.label_smoothing", savetxt(marker)),
        "exec_in_metrics": (
            "metrics.extra.evil",
            {"_target_": "builtins.exec", "_args_": [f"open({str(marker)!r}, 'w')"]},
        ),
        "torch_load_nested_args": (
            "model.net.extra",
            {"deep": [{"_target_": "functools.partial", "_args_": [{"_target_": "torch.load", "f": "x"}]}]},
        ),
        "partial_factory": ("augment", {"_target_": "os.system", "_partial_": True}),
        "attribute_path_through_recoml": (
            "task.helper",
            {"_target_": "recoml.training.torch.load", "f": "x"},
        ),
        "decoded_by_interpolation": (
            "task.label_smoothing",
            "${oc.decode:'{_target_: numpy.savetxt, fname: " + str(marker) + ", X: [1.0]}'}",
        ),
    }


# ------------------------------------------------------------------------------ load_model (library)


def test_pickle_payload_is_refused_by_load_model_and_runs_nothing(tmp_path: Path, pid_ckpt: Path) -> None:
    marker = tmp_path / "ran"
    bad = pickle_payload(pid_ckpt, tmp_path / "evil.ckpt", marker)
    with pytest.raises(DataError, match=r"evil.ckpt: refused: .*Python objects other than tensors") as info:
        load_model(str(bad))
    assert "\n" not in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize(
    "name",
    [
        "savetxt_in_task",
        "exec_in_metrics",
        "torch_load_nested_args",
        "partial_factory",
        "attribute_path_through_recoml",
        "decoded_by_interpolation",
    ],
)
def test_config_payload_is_refused_by_load_model_and_runs_nothing(
    tmp_path: Path, pid_ckpt: Path, name: str
) -> None:
    marker = tmp_path / "ran"
    place, node = _config_payloads(marker)[name]
    bad = config_payload(pid_ckpt, tmp_path / "evil.ckpt", place, node)
    with pytest.raises(ConfigError, match=r"evil.ckpt: refused to build '[\w.]+' \(at [\w.\[\]]+\)") as info:
        load_model(str(bad))
    assert "trust=[" in str(info.value) and "\n" not in str(info.value)
    assert not marker.exists()


def test_trust_on_the_command_line_allows_a_users_own_target(tmp_path: Path, pid_ckpt: Path) -> None:
    """A harmless non-shipped target is built only when the user names it in ``trust``."""
    node = {"_target_": "collections.OrderedDict"}
    ok = config_payload(pid_ckpt, tmp_path / "plugin.ckpt", "metrics.unused", node)
    with pytest.raises(ConfigError, match="collections.OrderedDict"):
        load_model(str(ok))
    assert load_model(str(ok), trust=["collections.OrderedDict"]).fitted


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:9/model.ckpt", "https://example.org/a.ckpt", "s3://b/a.ckpt"]
)
def test_remote_checkpoint_is_refused_in_one_sentence(url: str) -> None:
    with pytest.raises(ConfigError, match=r"is a URL; recoml opens local checkpoint files only"):
        load_model(url)


@pytest.mark.parametrize("kind", ["directory", "h5", "truncated", "missing", "not_recoml"])
def test_unusable_checkpoint_paths_are_one_sentence(tmp_path: Path, pid_ckpt: Path, kind: str) -> None:
    path = tmp_path / "x.ckpt"
    if kind == "directory":
        path.mkdir()
    elif kind == "h5":
        import h5py

        path = tmp_path / "store.h5"
        with h5py.File(path, "w") as f:
            f["x"] = [1, 2, 3]
    elif kind == "truncated":
        path.write_bytes(pid_ckpt.read_bytes()[:5000])
    elif kind == "not_recoml":
        torch.save({"weights": torch.zeros(3)}, path)
    from recoml.training import check_checkpoint_matches
    from tests.helpers import compose_train

    with pytest.raises(RecomlError) as info:
        load_model(str(path))
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    # `train ckpt_path=` reads it first with the same safe reader
    with pytest.raises(RecomlError) as info:
        check_checkpoint_matches(str(path), compose_train([], return_hydra_config=False))
    assert str(path) in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            "renamed",
            r"\(\d+ tensor\(s\) missing \(e.g. \['fitted', .*\]\), \d+ unexpected \(e.g. \['fitted_renamed'",
        ),
        (
            "reshaped",
            r"\(1 of another shape \(e.g. net.head.net.0.weight: \[3, 7\] in the file, \[3, \d+\] in the",
        ),
    ],
)
def test_another_models_checkpoint_is_one_sentence(
    tmp_path: Path, pid_ckpt: Path, change: str, message: str
) -> None:
    raw = raw_checkpoint(pid_ckpt)
    if change == "renamed":
        raw["state_dict"] = {k + "_renamed": v for k, v in raw["state_dict"].items()}
    else:
        raw["state_dict"]["net.head.net.0.weight"] = torch.zeros(3, 7)
    torch.save(raw, tmp_path / "other.ckpt")
    with pytest.raises(
        DataError, match="other.ckpt: the state dict does not fit the model its config builds " + message
    ):
        load_model(str(tmp_path / "other.ckpt"))


def test_resuming_from_a_checkpoint_of_another_width_is_one_sentence(
    tmp_path: Path, pid_ckpt: Path, toy_data: Path
) -> None:
    """Same model name, other settings: Lightning's strict load used to raise a page of size mismatches."""
    from recoml.training import train
    from tests.helpers import make_cfg

    cfg = make_cfg(tmp_path, toy_data, [f"ckpt_path={pid_ckpt}", "model.net.width=16"])
    with pytest.raises(
        ConfigError,
        match=r"last.ckpt does not fit this run's model=resnet18 \(\d+ of another shape \(e.g. "
        r"net.stem.0.weight: \[32, 38, 3, 3\] in the file, \[16, 38, 3, 3\] in the model\)\); resume with "
        r"the settings it was trained with",
    ):
        train(cfg)


# ------------------------------------------------------------------------ predict / export (in process)


@pytest.mark.parametrize("verb", ["predict", "export"])
def test_config_payload_is_refused_by_predict_and_export(tmp_path: Path, pid_ckpt: Path, verb: str) -> None:
    marker = tmp_path / "ran"
    place, node = _config_payloads(marker)["savetxt_in_task"]
    bad = config_payload(pid_ckpt, tmp_path / "evil.ckpt", place, node)
    cfg = compose_verb(verb, tmp_path / "run", [f"ckpt_path={bad}"])
    if verb == "predict":
        from recoml.prediction.run import predict as run
    else:
        from recoml.exporting.run import export as run
    with pytest.raises(ConfigError, match="refused to build 'numpy.savetxt'"):
        run(cfg)
    assert not marker.exists()
    assert not list((tmp_path / "run").glob("*.h5")) and not list((tmp_path / "run").glob("*.onnx"))


# ---------------------------------------------------------------------- entry points (exit code 2)


def _cli(verb: str, *overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", f"recoml.{verb}", *overrides, f"hydra.run.dir={cwd / verb}"]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("payload", ["pickle", "config"])
@pytest.mark.parametrize("verb", ["predict", "export", "train"])
def test_hostile_checkpoint_exits_2_from_every_entry_point(
    tmp_path: Path, pid_ckpt: Path, toy_data: Path, verb: str, payload: str
) -> None:
    marker = tmp_path / "ran"
    if payload == "pickle":
        bad = pickle_payload(pid_ckpt, tmp_path / "evil.ckpt", marker)
        message = "evil.ckpt: refused: the checkpoint holds Python objects"
    else:
        bad = config_payload(pid_ckpt, tmp_path / "evil.ckpt", "task.label_smoothing", savetxt(marker))
        message = "evil.ckpt: refused to build 'numpy.savetxt' (at task.label_smoothing._target_)"
    extra = [f"paths.data_dir={toy_data}", "trainer.max_epochs=2"] if verb == "train" else []
    result = _cli(verb, f"ckpt_path={bad}", *extra, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert message in result.stderr, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert not marker.exists()


@pytest.mark.parametrize("verb", ["predict", "export", "train"])
def test_remote_checkpoint_exits_2_from_every_entry_point(tmp_path: Path, toy_data: Path, verb: str) -> None:
    extra = [f"paths.data_dir={toy_data}", "trainer.max_epochs=2"] if verb == "train" else []
    result = _cli(verb, "ckpt_path=http://127.0.0.1:9/model.ckpt", *extra, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "is a URL" in result.stderr and "Traceback" not in result.stderr


def test_resume_from_a_config_payload_checkpoint_builds_nothing_from_it(
    tmp_path: Path, pid_ckpt: Path
) -> None:
    """``train ckpt_path=`` compares the stored config with the run's and never instantiates it; a target
    outside the allowlist is refused as by load_model, unless the run's ``trust`` names it."""
    from omegaconf import OmegaConf

    from recoml.training import check_checkpoint_matches

    marker = tmp_path / "ran"
    place, node = _config_payloads(marker)["savetxt_in_task"]
    bad = config_payload(pid_ckpt, tmp_path / "evil.ckpt", place, node)
    # The run's own config is the clean one it was trained with; only the file carries the payload.
    run = copy.deepcopy(raw_checkpoint(pid_ckpt)["hyper_parameters"]["config"])
    with pytest.raises(ConfigError, match=r"evil.ckpt: refused to build 'numpy.savetxt'"):
        check_checkpoint_matches(str(bad), OmegaConf.create(run))
    check_checkpoint_matches(str(bad), OmegaConf.create(run | {"trust": ["numpy.savetxt"]}))
    assert not marker.exists()


# ------------------------------------------------------------------------------ writes that cannot lie

_UNDER_FSIZE_LIMIT = """
import resource, runpy, sys
limit, verb = int(sys.argv[1]), sys.argv[2]
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
sys.argv = [f"recoml {verb}", *sys.argv[3:]]
runpy.run_module(f"recoml.{verb}", run_name="__main__", alter_sys=True)
"""

#: case -> (entry point, RLIMIT_FSIZE in bytes); every output is far larger than the limit, the run's
#: config and log far smaller.
_WRITE_FAILURES = {
    "simulate_staging": ("simulate", 200_000),  # the 300-event store is 1.44 MB: hit while staging chunks
    "simulate_final_copy": ("simulate", 700_000),  # staged chunks fit; the final HDF5 copy does not
    "convert": ("convert", 100_000),  # 400 events of 40 hits
    "predict": ("predict", 20_000),  # predictions of the 600-event toy store
    "evaluate": ("evaluate", 12_000),  # the first plot (PNG) is larger
    "export": ("export", 100_000),  # the ONNX graph holds the CNN's weights
}


def _write_failure_command(verb: str, tmp_path: Path, pid_ckpt: Path) -> tuple[list[str], list[Path]]:
    """The entry point's arguments and the final names it must not leave a file under."""
    if verb == "simulate":
        out = tmp_path / "out" / "toy.h5"
        return ["n_events=300", "chunk_size=100", f"output={out}"], [out, out.with_name("toy_splits.npz")]
    if verb == "convert":
        from recoml.conversion.synthetic import write_flat_wcsim
        from recoml.families.water_cherenkov import load_geometry
        from tests.helpers import DATA_DIR

        det = load_geometry(DATA_DIR / "geometry" / "wcte_wcsim_geofile.txt")
        src = write_flat_wcsim(tmp_path / "flat.root", 400, mean_hits=40, pmt_positions=det.pmt_positions)
        out = tmp_path / "out" / "events.h5"
        return [f"input={src}", "convert=flat_wcsim_tubes", f"output={out}", "progress=false"], [out]
    if verb == "predict":
        out = tmp_path / "out" / "predictions.h5"
        return [f"ckpt_path={pid_ckpt}", "split=test", f"output={out}"], [out, tmp_path / "run" / out.name]
    if verb == "evaluate":
        from tests.evaluation_helpers import write_predictions

        pred = write_predictions(tmp_path / "cnn" / "predictions.h5", "classification")
        out = tmp_path / "out"
        finals = [d / name for d in (out, tmp_path / "run") for name in ("report.md", "metrics.json")]
        return [f"predictions={pred}", f"output={out}", "options.displays=false"], finals
    out = tmp_path / "out" / "model.onnx"
    return [f"ckpt_path={pid_ckpt}", f"output={out}"], [out, tmp_path / "run" / out.name]


@pytest.mark.parametrize("case", list(_WRITE_FAILURES))
def test_a_write_failure_is_one_sentence_and_no_file_under_the_final_name(
    tmp_path: Path, pid_ckpt: Path, case: str
) -> None:
    """RLIMIT_FSIZE (what a full disk does to a writer) hit while an entry point writes its output: exit 2,
    one sentence naming the file, no file under a final name, no temporary left, no traceback or
    segfault. Simulate is hit while staging chunks and at the final copy."""
    verb, limit = _WRITE_FAILURES[case]
    args, finals = _write_failure_command(verb, tmp_path, pid_ckpt)
    cmd = [sys.executable, "-c", _UNDER_FSIZE_LIMIT, str(limit), verb, *args]
    result = subprocess.run(
        [*cmd, f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, OMP_NUM_THREADS="1"),
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert (
        "writing failed (the file-size limit was reached); nothing was written under that name"
        in result.stderr
    ), result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert [p for p in finals if p.exists()] == []
    assert list(tmp_path.rglob("*.recoml-tmp-*")) == []


def test_a_killed_simulation_leaves_no_store_and_the_next_run_removes_its_temporaries(tmp_path: Path) -> None:
    out = tmp_path / "data" / "toy.h5"
    out.parent.mkdir()
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "recoml.simulate", f"output={out}", f"hydra.run.dir={tmp_path / 'run'}"]
    kill_while_writing(
        [*cmd, "n_events=200000", "chunk_size=200"], ".toy.h5.recoml-tmp-*", out.parent, env=env, cwd=tmp_path
    )
    assert not out.exists() and list(out.parent.glob(".toy.h5.recoml-tmp-*"))  # killed: temporaries only
    rerun = subprocess.run(
        [*cmd, "n_events=300", "chunk_size=100"], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert sorted(p.name for p in out.parent.iterdir()) == ["toy.h5", "toy_splits.npz"]


def test_a_failed_copy_of_an_evaluation_leaves_no_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``evaluate output=<dir>`` copies figures first: a disk that fills during the copy leaves no
    metrics.json or report.md claiming a complete evaluation, and no temporary."""
    import errno
    import shutil

    from recoml.evaluation import run as evaluation_run

    src = tmp_path / "run"
    for name in ("metrics.json", "report.md", "plots/pid_roc.png", "plots/pid_roc.pdf"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(name)
    real = shutil.copyfile

    def copy(a, b, **kw):
        if Path(a).suffix == ".pdf":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(a, b, **kw)

    monkeypatch.setattr(evaluation_run.shutil, "copyfile", copy)
    with pytest.raises(DataError, match=r"pid_roc.pdf: writing failed \(the disk is full\); nothing was"):
        evaluation_run.copy_outputs(src, tmp_path / "out", overwrite=False)
    assert sorted(p.name for p in (tmp_path / "out").rglob("*")) == ["plots"]


def test_a_planted_symlink_at_a_temporary_name_is_never_written_through(tmp_path: Path) -> None:
    from recoml.io.atomic import atomic_output, temp_path

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    target = tmp_path / "out.txt"
    # Names are unpredictable; even a planted link at every name of the old scheme changes nothing.
    for old in (f".{target.name}.tmp", f".{target.name}.tmp-{os.getpid()}"):
        (tmp_path / old).symlink_to(victim)
    with atomic_output(target) as tmp:
        assert tmp.name.startswith(".out.txt.recoml-tmp-") and not tmp.is_symlink()
        tmp.write_text("new")
    assert target.read_text() == "new" and victim.read_text() == "precious"
    assert temp_path(target) != temp_path(target)


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    from recoml.io.atomic import atomic_output

    target = tmp_path / "metrics.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer crashed")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_temporaries_of_a_dead_process_are_removed_by_the_next_write(tmp_path: Path) -> None:
    from recoml.io.atomic import MARK, write_text

    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead = int(proc.stdout)
    stale = tmp_path / f".out.txt{MARK}{dead}-0123456789abcdef"
    stale.write_text("half")
    write_text(tmp_path / "out.txt", "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


@pytest.mark.parametrize("fmt", ["h5", "pt"])
def test_a_store_damaged_after_writing_is_refused_on_open(tmp_path: Path, fmt: str) -> None:
    import numpy as np

    from recoml.data.store import open_store, write_store

    path = tmp_path / f"s.{fmt}"
    counts = np.array([3, 2, 4])
    write_store(
        path,
        {
            "event_hits_index": np.r_[0, np.cumsum(counts)[:-1]],
            "energy": np.ones(3),
            "hit_charge": np.arange(9, dtype=np.float32),
        },
    )
    assert open_store(path).n_events == 3
    if fmt == "h5":
        import h5py

        with h5py.File(path, "r+") as f:
            f["hit_charge"][4] = 0.0  # the zeros a swallowed write error leaves
    else:
        raw = torch.load(path, weights_only=True)
        raw["hit_charge"][4] = 0.0
        torch.save(raw, path)
    with pytest.raises(DataError, match=r"does not match the checksum recorded when it was written"):
        open_store(path)


# ------------------------------------------------------------------------------ validation that covers all


def _small_store(path: Path, **override) -> Path:
    import numpy as np

    from recoml.data.store import write_store

    counts = np.array([3, 2, 4])
    arrays = {
        "event_hits_index": np.r_[0, np.cumsum(counts)[:-1]],
        "energy": np.ones(3),
        "hit_pmt": np.array([0, 1, 2, 3, 4, 5, 6, 7, 8], dtype=np.int32),
        "hit_charge": np.arange(9, dtype=np.float32),
    }
    return write_store(path, arrays | override, attrs={"detector": "wcte", "n_pmts": 1767})


def test_every_event_is_validated_not_a_sample(tmp_path: Path) -> None:
    """A bad value in the middle of a store (beyond the first and last 1,000 events) is found."""
    import numpy as np

    from recoml.data.store import open_store, write_store

    n = 5000
    charge = np.ones(n, dtype=np.float32)
    charge[2500] = np.nan
    pmt = np.zeros(n, dtype=np.int32)
    pmt[2600] = 99999
    index = np.arange(n)
    write_store(tmp_path / "nan.h5", {"event_hits_index": index, "hit_charge": charge, "hit_pmt": pmt * 0})
    with pytest.raises(DataError, match=r"'hit_charge' has 1 NaN/inf values, the first in event 2500"):
        open_store(tmp_path / "nan.h5").validate(n_pmts=1767)
    write_store(
        tmp_path / "pmt.h5",
        {"event_hits_index": index, "hit_charge": np.zeros(n, np.float32), "hit_pmt": pmt},
    )
    with pytest.raises(DataError, match=r"hit_pmt value 99999 at event 2600"):
        open_store(tmp_path / "pmt.h5").validate(n_pmts=1767)


def _store_with_a_bad_hit(toy_data: Path, path: Path, fault: str) -> tuple[Path, int]:
    """The toy store rewritten with one bad hit (a NaN charge or a PMT id beyond the detector), event 300."""
    from recoml.data.integrity import CHECKSUM_ATTR
    from recoml.data.store import open_store, write_store

    source = open_store(toy_data / "toy_wcte.h5")
    arrays = {name: np.array(source.array(name)) for name in source.fields}
    row = int(arrays["event_hits_index"][300]) + 1
    if fault == "nan_charge":
        arrays["hit_charge"][row] = np.nan
    else:
        arrays["hit_pmt"][row] = 5000
    attrs = {k: v for k, v in source.attrs.items() if k != CHECKSUM_ATTR}
    return write_store(path, arrays, attrs=attrs), row


@pytest.mark.parametrize("fault", ["nan_charge", "pmt_out_of_range"])
@pytest.mark.parametrize("verb", ["train", "predict"])
def test_a_bad_hit_in_the_middle_of_a_store_stops_training_and_prediction(
    tmp_path: Path, toy_data: Path, pid_ckpt: Path, verb: str, fault: str
) -> None:
    """Training used to crash with an IndexError on a PMT id beyond the detector, and prediction (which
    sampled the first and last events) wrote an all-NaN row for a NaN charge: both now refuse the store."""
    bad, row = _store_with_a_bad_hit(toy_data, tmp_path / "data" / "toy_wcte.h5", fault)
    message = (
        rf"toy_wcte.h5: 'hit_charge' has 1 NaN/inf values, the first in event 300 \(row {row}\)"
        if fault == "nan_charge"
        else rf"toy_wcte.h5: hit_pmt value 5000 at event 300 \(hit row {row}\) is outside \[0, 2014\)"
    )
    if verb == "train":
        from recoml.training import train
        from tests.helpers import make_cfg

        with pytest.raises(DataError, match=message):
            train(make_cfg(tmp_path, bad.parent))
    else:
        from recoml.prediction.run import predict

        overrides = [f"ckpt_path={pid_ckpt}", "dataset=from_file", f"dataset.path={bad}", "split=all"]
        with pytest.raises(DataError, match=message):
            predict(compose_verb("predict", tmp_path / "run", [*overrides, "allow_training_events=true"]))
    assert not list((tmp_path / "run").glob("*.h5")) and not list((tmp_path / "run").rglob("*.ckpt"))


def test_full_validation_runs_once_per_store_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import recoml.data.store as store_module
    from recoml.data.store import open_store

    path = _small_store(tmp_path / "s.h5")
    calls = []
    real = store_module.check_values
    monkeypatch.setattr(store_module, "check_values", lambda *a, **k: calls.append(1) or real(*a, **k))
    open_store(path).validate(n_pmts=1767)
    open_store(path).validate(n_pmts=1767)
    assert len(calls) == 1


def test_float_pmt_ids_are_refused(tmp_path: Path) -> None:
    import numpy as np

    from recoml.data.store import open_store

    path = _small_store(tmp_path / "s.h5", hit_pmt=np.arange(9, dtype=np.float32))
    with pytest.raises(DataError, match=r"'hit_pmt' must hold integer PMT ids, it is float32"):
        open_store(path).validate(n_pmts=1767)


def test_external_link_and_external_storage_are_refused(tmp_path: Path) -> None:
    import h5py
    import numpy as np

    from recoml.data.store import open_store

    _small_store(tmp_path / "other.h5")
    with h5py.File(tmp_path / "linked.h5", "w") as f:
        f["event_hits_index"] = np.array([0, 3, 5])
        f["hit_charge"] = np.zeros(9, dtype=np.float32)
        f["energy"] = h5py.ExternalLink(str(tmp_path / "other.h5"), "/energy")
    with pytest.raises(DataError, match=r"'energy' is an external link to .*other.h5:/energy"):
        open_store(tmp_path / "linked.h5")
    raw = tmp_path / "raw.bin"
    np.ones(3).tofile(raw)
    with h5py.File(tmp_path / "external.h5", "w") as f:
        f["event_hits_index"] = np.array([0, 3, 5])
        f["hit_charge"] = np.zeros(9, dtype=np.float32)
        f.create_dataset("energy", shape=(3,), dtype="<f8", external=[(str(raw), 0, 24)])
    with pytest.raises(DataError, match=r"dataset 'energy' is stored in external raw files"):
        open_store(tmp_path / "external.h5")


def test_store_nested_in_a_group_is_named(tmp_path: Path) -> None:
    import h5py
    import numpy as np

    from recoml.data.store import open_store

    with h5py.File(tmp_path / "nested.h5", "w") as f:
        g = f.create_group("events")
        g["event_hits_index"] = np.array([0, 3, 5])
        g["hit_charge"] = np.zeros(9, dtype=np.float32)
    with pytest.raises(
        DataError, match=r"no datasets at the top level; the store lies in the group 'events'"
    ):
        open_store(tmp_path / "nested.h5")


@pytest.mark.parametrize("kind", ["directory", "fifo", "dev_zero"])
def test_a_store_that_is_not_a_regular_file_is_refused_without_hanging(tmp_path: Path, kind: str) -> None:
    from recoml.data.store import open_store

    path = {"directory": tmp_path / "d.h5", "fifo": tmp_path / "f.h5", "dev_zero": Path("/dev/zero")}[kind]
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    with pytest.raises(DataError, match=r"is a directory|not a regular file"):
        open_store(path)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("dataset.batch_size=-1", "dataset.batch_size: expected a positive integer, got -1"),
        ("dataset.batch_size=0", "dataset.batch_size: expected a positive integer, got 0"),
        ("dataset.batch_size=1.5", "dataset.batch_size: expected a positive integer, got 1.5"),
        ("optimizer.lr=abc", "optimizer.lr: expected a positive number, got 'abc'"),
        ("model.net.width=0", "model.net.width: expected a positive integer, got 0"),
        ("dataset.num_workers=-1", "dataset.num_workers: expected an integer >= 0, got -1"),
        ("seed=abc", "seed: expected an integer, got 'abc'"),
        ("trainer.max_epochs=0", "trainer.max_epochs: expected a positive integer"),
    ],
)
def test_invalid_config_values_are_one_sentence_before_any_work(override: str, message: str) -> None:
    from recoml.utils.config_checks import check_config_values
    from tests.helpers import compose_train

    cfg = compose_train([override], return_hydra_config=False)
    with pytest.raises(ConfigError) as info:
        check_config_values(cfg)
    assert message in str(info.value)


# ------------------------------------------------------------------------------ runs that never collide


def test_infinite_values_are_handled_by_nan_policy(tmp_path: Path) -> None:
    import awkward as ak
    import numpy as np

    from tests.conversion.test_convert import convert, write_tree

    src = write_tree(
        tmp_path / "inf.root",
        {
            "tube": ak.Array([[1, 2], [3]]),
            "charge": ak.Array([[1.0, np.inf], [2.0]]),
            "time": ak.Array([[5.0, 6.0], [-np.inf]]),
            "energy": np.array([100.0, 200.0], np.float32),
            **{k: np.ones(2, np.float32) for k in ("vtx_x", "vtx_y", "vtx_z", "dir_x", "dir_y", "dir_z")},
            "pid": np.array([11, 13], np.int32),
        },
    )
    with pytest.raises(DataError, match=r"2 NaN/inf value\(s\) in 'hit_charge' \(1\), 'hit_time' \(1\)"):
        convert(tmp_path, src, "flat_wcsim_tubes")
    assert not (tmp_path / "out.h5").exists()


@pytest.mark.parametrize("text", ["9**9**9", "x ** 1000", "2 ** -100"])
def test_huge_powers_are_refused_not_computed(text: str) -> None:
    import numpy as np

    from recoml.conversion.expressions import Expression

    expr = Expression.parse(text, "convert field 'hit_x'")
    with pytest.raises(ConfigError, match=r"outside \[-64, 64\]; mappings allow bounded powers only"):
        expr.evaluate({"x": np.ones(3)})
    assert Expression.parse("x ** 2", "f").evaluate({"x": np.array([3.0])}).tolist() == [9.0]


#: Mapping expressions a hostile or careless mapping could hold: code execution, introspection, constructs
#: outside arithmetic, names that are not values, huge powers. Each is one ConfigError, never run.
EXPRESSION_ATTACKS = [
    "__import__('os').system('true')",
    "eval('1')",
    "exec('x=1')",
    "open('/etc/passwd')",
    "compile('1', 'f', 'eval')",
    "getattr(x, 'real')",
    "setattr(x, 'a', 1)",
    "globals()",
    "locals()",
    "vars()",
    "type(x)",
    "print(x)",
    "__builtins__",
    "x.__class__",
    "().__class__.__bases__",
    "[].__class__.__mro__",
    "object.__subclasses__()",
    "where.__globals__",
    "sqrt.__self__",
    "x.real",
    "np.sqrt(x)",
    "lambda: 0",
    "(lambda: 0)()",
    "[a for a in x]",
    "{a for a in x}",
    "{a: a for a in x}",
    "(a for a in x)",
    "f'{x}'",
    "'abc'",
    "b'abc'",
    "None",
    "...",
    "x['real']",
    "x[y]",
    "x[::y]",
    "(x := 1)",
    "x if y else z",
    "x if True else __import__('os')",
    "x and y",
    "not x",
    "x @ y",
    "x << 3",
    "x ^ y",
    "sqrt(x)(1)",
    "x[0](1)",
    "sqrt(x, out=x)",
    "sqrt(*x)",
    "sqrt(**x)",
    "unknown(x)",
    "{}",
    "[x, y]",
    "(x, y)",
    "import os",
    "x = 1",
    "x; y",
    "x\ny",
    "yield x",
    "await x",
    "9**9**9",
    "9 ** 9 ** 9 ** 9",
    "x ** 1000",
    "10 ** 400",
    "2 ** -100",
    "not_a_branch + x",
]


@pytest.mark.parametrize("text", EXPRESSION_ATTACKS)
def test_expression_attacks_are_one_config_error_and_run_nothing(text: str) -> None:
    from recoml.conversion.expressions import Expression

    values = {"x": np.ones(3), "y": np.ones(3), "z": np.ones(3)}
    with pytest.raises(ConfigError) as info:
        Expression.parse(text, "convert field 'hit_x'").evaluate(values)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["../../x", "a/b", "..", "/etc/passwd"])
def test_a_mapping_name_cannot_escape_its_directory(name: str) -> None:
    from omegaconf import OmegaConf

    from recoml.conversion.mapping import parse_mapping
    from tests.helpers import CONF_DIR

    raw = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "convert" / "flat_wcsim_tubes.yaml"))
    with pytest.raises(ConfigError, match=r"must be a plain file name"):
        parse_mapping(raw | {"name": name})


def test_hpo_workers_with_consecutive_seeds_draw_different_trials() -> None:
    """Seeds 1, 2, 3 joining after 2, 1, 0 trials used to get the same sampler seed (1+2 = 2+1 = 3+0), so
    they drew the same trial."""
    import optuna
    from omegaconf import OmegaConf

    from recoml.sweeps.study import _with_sampler

    space = {"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)}
    draws = []
    for seed, done in [(1, 2), (2, 1), (3, 0)]:
        storage = optuna.storages.InMemoryStorage()
        study = optuna.create_study(storage=storage, study_name="s")
        for _ in range(done):
            study.add_trial(optuna.trial.create_trial(params={"lr": 1e-3}, distributions=space, value=1.0))
        cfg = OmegaConf.create(
            {"hpo": {"sampler": {"_target_": "optuna.samplers.RandomSampler", "seed": seed}, "pruner": None}}
        )
        draws.append(_with_sampler(cfg, storage, study).ask(space).params["lr"])
    assert len(set(draws)) == 3, draws


def test_run_directories_are_named_to_the_microsecond() -> None:
    """Two runs started in the same second get different directories (the lock covers the rest)."""
    import re

    from omegaconf import OmegaConf

    from tests.helpers import compose_train

    cfg = compose_train([])
    for key in ("hydra.run.dir", "hydra.sweep.dir"):
        name = Path(str(OmegaConf.select(cfg, key))).name
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}-\d{6}", name), (key, name)


def test_an_invalid_config_value_exits_2_in_one_sentence(tmp_path: Path, toy_data: Path) -> None:
    result = _cli("train", f"paths.data_dir={toy_data}", "dataset.batch_size=0", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "dataset.batch_size: expected a positive integer, got 0" in result.stderr
    assert "Traceback" not in result.stderr


def test_concurrent_first_opens_of_a_sqlite_storage_all_succeed(tmp_path: Path) -> None:
    code = (
        "import sys; from recoml.sweeps.storage import open_storage; "
        "open_storage(sys.argv[1], sys.argv[2]); print('ok')"
    )
    url = f"sqlite:///{tmp_path / 'study.db'}"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, url, str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err[-500:] for _, err in results]


def test_a_resumed_run_appends_to_metrics_csv(tmp_path: Path) -> None:
    """Lightning's CSVLogger deletes metrics.csv when it starts; a requeued run must keep earlier rows."""
    import csv

    from recoml.loggers import AppendingCSVLogger

    first = AppendingCSVLogger(save_dir=str(tmp_path), name="csv", version="")
    first.log_metrics({"val/loss": 1.0}, step=0)
    first.save()
    second = AppendingCSVLogger(save_dir=str(tmp_path), name="csv", version="")
    second.log_metrics({"val/loss": 0.5}, step=1)
    second.save()
    rows = list(csv.DictReader(open(tmp_path / "csv" / "metrics.csv")))
    assert [(r["step"], r["val/loss"]) for r in rows] == [("0", "1.0"), ("1", "0.5")]


def test_a_config_that_does_not_compose_exits_2(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "recoml.train", "no_such_key=1", f"hydra.run.dir={tmp_path / 'run'}"]
    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "no_such_key" in result.stderr


def test_two_trainings_cannot_share_a_run_directory(tmp_path: Path) -> None:
    from recoml.training import claim_run_dir

    with claim_run_dir(tmp_path / "run"):
        with pytest.raises(ConfigError, match=r"run directory .*run is in use by another training \(pid \d+"):
            with claim_run_dir(tmp_path / "run"):
                pass
    with claim_run_dir(tmp_path / "run"):  # released when the first run ended
        pass


# ------------------------------------------------------------------------------ predictions files (evaluate)


def _spoil(path: Path, name: str, change) -> Path:
    """Replace dataset ``name`` of a predictions file by ``change(values)`` (any dtype)."""
    import h5py

    with h5py.File(path, "r+") as f:
        values = change(f[name][()])
        del f[name]
        f[name] = values
    return path


def _set(values, row: int, value):
    values = values.astype(type(value) if isinstance(value, float) else values.dtype)
    values[row] = value
    return values


#: name -> (kind, dataset, change, the words of the one sentence)
_BAD_PREDICTIONS = {
    "nan_probability": (
        "classification",
        "pred_probabilities",
        lambda v: _set(v, 7, [np.nan, 0.5, 0.5]),
        r"field 'pred_probabilities' has 1 NaN/inf value\(s\), the first nan in row 7; expected class prob",
    ),
    "inf_probability": (
        "classification",
        "pred_probabilities",
        lambda v: _set(v, 3, [np.inf, 0.0, 0.0]),
        r"'pred_probabilities' has 1 NaN/inf value\(s\), the first inf in row 3",
    ),
    "probability_above_one": (
        "classification",
        "pred_probabilities",
        lambda v: _set(v, 5, [1.5, -0.25, -0.25]),
        r"'pred_probabilities' has 3 value\(s\) outside \[0, 1\], the first 1.5 in row 5",
    ),
    "rows_not_summing_to_one": (
        "classification",
        "pred_probabilities",
        lambda v: v * 0.5,
        r"'pred_probabilities' has 400 row\(s\) not summing to 1 \(row sums\), the first 0.5 in row 0",
    ),
    "label_out_of_range": (
        "classification",
        "true_labels",
        lambda v: _set(v, 11, 3),
        r"field 'true_labels' has 1 label\(s\) outside \[0, 3\), the first 3 in row 11; expected class "
        r"indices 0..2 \(gamma, e, mu\)",
    ),
    "negative_label": (
        "classification",
        "true_labels",
        lambda v: _set(v, 2, -1),
        r"'true_labels' has 1 label\(s\) outside \[0, 3\), the first -1 in row 2",
    ),
    "non_integer_label": (
        "classification",
        "true_labels",
        lambda v: _set(v, 9, 1.5),
        r"'true_labels' has 1 non-integer value\(s\), the first 1.5 in row 9; expected class indices",
    ),
    "nan_label": (
        "classification",
        "true_labels",
        lambda v: _set(v, 4, np.nan),
        r"'true_labels' has 1 NaN/inf value\(s\), the first nan in row 4",
    ),
    "bool_labels": (
        "classification",
        "true_labels",
        lambda v: v > 0,
        r"'true_labels' has dtype bool; expected class indices",
    ),
    "hit_probability_above_one": (
        "hit_classification",
        "hit_pred_hit_probability",
        lambda v: _set(v, 20, 1.2),
        r"'hit_pred_hit_probability' has 1 value\(s\) outside \[0, 1\], the first 1.2 in row 20",
    ),
    "hit_truth_not_a_flag": (
        "hit_classification",
        "hit_true_hit_signal",
        lambda v: _set(v, 6, 2.0),
        r"'hit_true_hit_signal' has 1 value\(s\) other than 0 and 1, the first 2 in row 6",
    ),
    "nan_energy": (
        "energy",
        "pred_energy",
        lambda v: _set(v, 8, np.nan),
        r"'pred_energy' has 1 NaN/inf value\(s\), the first nan in row 8; expected finite numbers",
    ),
}


@pytest.mark.parametrize("case", sorted(_BAD_PREDICTIONS))
def test_evaluate_refuses_predictions_no_metric_can_be_computed_from(tmp_path: Path, case: str) -> None:
    from recoml.evaluation import evaluate_files
    from tests.evaluation_helpers import write_predictions

    kind, name, change, message = _BAD_PREDICTIONS[case]
    path = _spoil(write_predictions(tmp_path / "run" / "predictions.h5", kind), name, change)
    with pytest.raises(DataError, match=message) as info:
        evaluate_files([path], tmp_path / "eval", options={"displays": False})
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "eval" / "metrics.json").exists()


def test_evaluate_accepts_whole_float_labels(tmp_path: Path) -> None:
    """Class indices stored as whole floats (1.0) are indices; only non-integer values are refused."""
    from recoml.evaluation import evaluate_files
    from tests.evaluation_helpers import write_predictions

    path = write_predictions(tmp_path / "run" / "predictions.h5", "classification")
    _spoil(path, "true_labels", lambda v: v.astype(np.float32))
    result = evaluate_files([path], tmp_path / "eval", options={"displays": False})
    assert 0.3 < result.scalars("pid", "run")["accuracy"] <= 1.0


def test_evaluate_entry_point_exits_2_on_nan_probabilities(tmp_path: Path) -> None:
    from tests.evaluation_helpers import write_predictions

    kind, name, change, message = _BAD_PREDICTIONS["nan_probability"]
    path = _spoil(write_predictions(tmp_path / "run" / "predictions.h5", kind), name, change)
    result = _cli("evaluate", f"predictions={path}", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "'pred_probabilities' has 1 NaN/inf value(s)" in result.stderr and "Traceback" not in result.stderr


# ------------------------------------------------------------------------------ stores: no silent casts


@pytest.mark.parametrize(
    ("field", "values", "what"),
    [
        ("labels", np.array([0.0, 1.7, 2.0], np.float32), "integer particle labels, it is float32"),
        ("labels", np.array([True, False, True]), "integer particle labels, it is bool"),
        ("hit_pmt", np.arange(9, dtype=np.float64), "integer PMT ids, it is float64"),
        (
            "hit_parent",
            np.zeros(9, np.float32),
            "integer particle indices \\(-1 dark noise\\), it is float32",
        ),
    ],
)
def test_float_or_bool_ids_and_labels_are_refused_by_validation(
    tmp_path: Path, field: str, values: np.ndarray, what: str
) -> None:
    """The store format makes ids and labels integers; a float or bool array is refused, never cast."""
    from recoml.data.store import open_store

    path = _small_store(tmp_path / "s.h5", **{field: values})
    for n_pmts in (1767, None):  # whether or not PMT ids are range-checked
        with pytest.raises(DataError, match=rf"s.h5: '{field}' must hold {what}; write it with an integer"):
            open_store(path).validate(n_pmts=n_pmts)


@pytest.mark.parametrize("labels", [torch.tensor([0.0, 1.7]), torch.tensor([True, False])])
def test_a_classification_task_never_casts_float_or_bool_labels(labels: torch.Tensor) -> None:
    """Any label field (not only the store's ``labels``) reaches the task uncast; the task refuses it."""
    from recoml.tasks import ClassificationTask

    task = ClassificationTask(target="my_label")
    with pytest.raises(
        DataError, match=r"task pid: field 'my_label' holds (float32|bool) values; expected integer"
    ):
        task.classes_of(labels)
    assert task.classes_of(torch.tensor([2, 0], dtype=torch.int32)).tolist() == [2, 0]
