"""Hostile and careless inputs: each gives one sentence (a RecomlError, exit code 2 at the entry point)
and nothing runs, nothing lies. See docs/reliability.md for the guarantee each test proves."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from recoml import load_model
from recoml.errors import ConfigError, DataError, RecomlError

from .evaluation_helpers import compose_verb


class _Payload:
    """Unpickling this runs ``exec``: the pickle payload a hostile checkpoint hides in an extra key."""

    def __init__(self, marker: Path) -> None:
        self.code = f"open({str(marker)!r}, 'w').write('ran')"

    def __reduce__(self):
        return (exec, (self.code,))


def _raw(ckpt: Path) -> dict:
    return torch.load(ckpt, map_location="cpu", weights_only=True)


def _pickle_payload(src: Path, dst: Path, marker: Path) -> Path:
    raw = _raw(src)
    raw["extra"] = _Payload(marker)
    torch.save(raw, dst)
    return dst


def _config_payload(src: Path, dst: Path, place: str, node: object) -> Path:
    """``src`` with ``node`` stored at the dotted ``place`` of its training config."""
    raw = _raw(src)
    config = raw["hyper_parameters"]["config"]
    *parents, leaf = place.split(".")
    for key in parents:
        config = config.setdefault(key, {})
    config[leaf] = node
    torch.save(raw, dst)
    return dst


def _savetxt(marker: Path) -> dict:
    """A target Hydra's own blocklist lets through: building it writes ``marker``."""
    return {"_target_": "numpy.savetxt", "fname": str(marker), "X": [1.0]}


def _config_payloads(marker: Path) -> dict[str, tuple[str, object]]:
    """Config payloads: name -> (where in the stored config, what)."""
    return {
        "savetxt_in_task": ("task.label_smoothing", _savetxt(marker)),
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
    bad = _pickle_payload(pid_ckpt, tmp_path / "evil.ckpt", marker)
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
    bad = _config_payload(pid_ckpt, tmp_path / "evil.ckpt", place, node)
    with pytest.raises(ConfigError, match=r"evil.ckpt: refused to build '[\w.]+' \(at [\w.\[\]]+\)") as info:
        load_model(str(bad))
    assert "trust=[" in str(info.value) and "\n" not in str(info.value)
    assert not marker.exists()


def test_trust_on_the_command_line_allows_a_users_own_target(tmp_path: Path, pid_ckpt: Path) -> None:
    """A harmless non-shipped target is built only when the user names it in ``trust``."""
    node = {"_target_": "collections.OrderedDict"}
    ok = _config_payload(pid_ckpt, tmp_path / "plugin.ckpt", "metrics.unused", node)
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
    with pytest.raises(RecomlError) as info:
        load_model(str(path))
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_another_models_checkpoint_is_one_sentence(tmp_path: Path, pid_ckpt: Path) -> None:
    raw = _raw(pid_ckpt)
    raw["state_dict"] = {k + "_renamed": v for k, v in raw["state_dict"].items()}
    torch.save(raw, tmp_path / "other.ckpt")
    with pytest.raises(DataError, match="does not fit the model its config builds"):
        load_model(str(tmp_path / "other.ckpt"))


# ------------------------------------------------------------------------ predict / export (in process)


@pytest.mark.parametrize("verb", ["predict", "export"])
def test_config_payload_is_refused_by_predict_and_export(tmp_path: Path, pid_ckpt: Path, verb: str) -> None:
    marker = tmp_path / "ran"
    place, node = _config_payloads(marker)["savetxt_in_task"]
    bad = _config_payload(pid_ckpt, tmp_path / "evil.ckpt", place, node)
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


@pytest.mark.parametrize("verb", ["predict", "export", "train"])
def test_pickle_payload_exits_2_from_every_entry_point(
    tmp_path: Path, pid_ckpt: Path, toy_data: Path, verb: str
) -> None:
    marker = tmp_path / "ran"
    bad = _pickle_payload(pid_ckpt, tmp_path / "evil.ckpt", marker)
    extra = [f"paths.data_dir={toy_data}", "trainer.max_epochs=2"] if verb == "train" else []
    result = _cli(verb, f"ckpt_path={bad}", *extra, cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "refused: the checkpoint holds Python objects" in result.stderr
    assert "Traceback" not in result.stderr
    assert not marker.exists()


def test_remote_checkpoint_exits_2_from_predict(tmp_path: Path) -> None:
    result = _cli("predict", "ckpt_path=http://127.0.0.1:9/model.ckpt", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "is a URL" in result.stderr and "Traceback" not in result.stderr


def test_resume_from_a_config_payload_checkpoint_builds_nothing_from_it(
    tmp_path: Path, pid_ckpt: Path
) -> None:
    """``train ckpt_path=`` compares the stored config with the run's, never instantiates it."""
    from recoml.training import check_checkpoint_matches

    marker = tmp_path / "ran"
    place, node = _config_payloads(marker)["savetxt_in_task"]
    bad = _config_payload(pid_ckpt, tmp_path / "evil.ckpt", place, node)
    saved = copy.deepcopy(_raw(bad)["hyper_parameters"]["config"])
    check_checkpoint_matches(str(bad), __import__("omegaconf").OmegaConf.create(saved))
    assert not marker.exists()


# ------------------------------------------------------------------------------ writes that cannot lie

_UNDER_FSIZE_LIMIT = """
import resource, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
sys.argv = [sys.argv[0], *sys.argv[2:]]
from recoml.simulate import main
main()
"""


@pytest.mark.parametrize("limit", [200_000, 2_000_000])  # while staging; at the final copy
def test_simulate_under_a_file_size_limit_is_one_sentence_and_no_file(tmp_path: Path, limit: int) -> None:
    """RLIMIT_FSIZE hit while the chunk file or the final copy is written: exit 2, one sentence, no store,
    no split file, no temporary left, no segfault."""
    out = tmp_path / "data" / "toy.h5"
    cmd = [sys.executable, "-c", _UNDER_FSIZE_LIMIT, str(limit), "n_events=1000", "chunk_size=500"]
    cmd += [f"output={out}", f"hydra.run.dir={tmp_path / 'run'}"]
    result = subprocess.run(
        cmd,
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
    )
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in out.parent.iterdir()) == []


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
