"""Conversion of real ROOT files, synthetic flat WCSim files and TrackML CSV into the event store.

Every converted store is read back with ``open_store`` and compared with what uproot (or pandas) reads
directly from the same input; bad inputs must fail with one clear sentence and leave no output behind.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import awkward as ak
import h5py
import numpy as np
import pytest
import uproot
from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf

from recoml.conf import CONFIG_MODULE
from recoml.conversion.expressions import Expression, angles_from_direction, pdg_label
from recoml.conversion.long_tree import group_rows
from recoml.conversion.mapping import parse_mapping
from recoml.conversion.pipeline import convert_root
from recoml.conversion.run import convert_from_config
from recoml.conversion.synthetic import write_flat_wcsim
from recoml.data.store import open_store
from recoml.errors import ConfigError, DataError, GeometryError
from recoml.families.water_cherenkov import load_geometry
from tests.helpers import CONF_DIR, REPO
from tests.hostile_helpers import kill_while_writing


def compose_convert(overrides: list[str]) -> DictConfig:
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        return compose(config_name="convert", overrides=overrides)


def convert(tmp_path: Path, input: Path | str, mapping: str, *extra: str, name: str = "out.h5") -> Path:
    cfg = compose_convert(
        [f"input={input}", f"convert={mapping}", f"output={tmp_path / name}", "progress=false", *extra]
    )
    return convert_from_config(cfg)


def mapping_of(name: str, **changes: object):
    raw = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "convert" / f"{name}.yaml"))
    raw.update(changes)
    return parse_mapping(raw)


def leftovers(directory: Path) -> list[str]:
    """Files other than the inputs: temporary files or partial outputs."""
    return sorted(p.name for p in directory.iterdir() if p.suffix != ".root")


def write_tree(path: Path, branches: dict[str, object], tree: str = "events") -> Path:
    with uproot.recreate(path) as f:
        f.mktree(
            tree,
            {k: ak.type(v) if isinstance(v, ak.Array) else np.asarray(v).dtype for k, v in branches.items()},
        )
        f[tree].extend(branches)
    return path


@pytest.fixture(scope="module")
def root_dir(real_data: Path) -> Path:
    return real_data / "root"


@pytest.fixture(scope="module")
def wcte_geofile(real_data: Path) -> Path:
    return real_data / "geometry" / "wcte_wcsim_geofile.txt"


@pytest.fixture(scope="module")
def flat_file(tmp_path_factory: pytest.TempPathFactory, wcte_geofile: Path) -> Path:
    """400 WCTE events whose hit positions are the true PMT's position jittered by up to 1 cm per axis."""
    det = load_geometry(wcte_geofile)
    path = tmp_path_factory.mktemp("flat") / "flat.root"
    return write_flat_wcsim(
        path, 400, mean_hits=40, pmt_positions=det.pmt_positions, position_jitter=1.0, chunk_size=150
    )


# ------------------------------------------------------------------------------ expressions and mappings


def test_expressions_hand_computed() -> None:
    assert list(pdg_label(np.array([22, 11, -11, 13, -13, 111, 211]))) == [0, 1, 1, 2, 2, 3, -1]
    ang = angles_from_direction(
        np.array([1.0, 0.0, 0.0]), np.array([0.0, 2.0, 0.0]), np.array([0.0, 0.0, -1.0])
    )
    np.testing.assert_allclose(ang, [[np.pi / 2, 0.0], [0.0, 0.0], [np.pi / 2, -np.pi / 2]], atol=1e-12)
    e = Expression.parse("hypot(a, b) * 0.1 + c[:, 1]", "test")
    assert e.names == {"a", "b", "c"}
    out = e.evaluate({"a": np.array([3.0]), "b": np.array([4.0]), "c": np.array([[0.0, 7.0]])})
    np.testing.assert_allclose(out, [7.5])
    jag = Expression.parse("t - t0", "test").evaluate(
        {"t": ak.Array([[1.0, 2.0], [5.0]]), "t0": np.array([1.0, 5.0])}
    )
    assert ak.to_list(jag) == [[0.0, 1.0], [0.0]]
    # per-event reference: the earliest hit where the condition holds, else the earliest, 0 without hits
    ref = Expression.parse("t - event_min(t, trig > 0)", "test").evaluate(
        {"t": ak.Array([[9.0, 4.0, 6.0], [3.0, 1.0], []]), "trig": ak.Array([[1, 0, 1], [0, 0], []])}
    )
    assert ak.to_list(ref) == [[3.0, -2.0, 0.0], [2.0, 0.0], []]
    with pytest.raises(ConfigError, match="needs per-hit values"):
        Expression.parse("event_min(e)", "test").evaluate({"e": np.array([1.0, 2.0])})
    assert group_rows(np.array([4, 4, 7, 9, 9, 9]), "x")[1].tolist() == [2, 1, 3]


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("__import__('os').system('true')", "call '__import__"),
        ("a.b", "Attribute"),
        ("[a for a in b]", "ListComp"),
        ("a +", "not valid"),
        ("a['x']", "constant integer"),
    ],
)
def test_expressions_refuse_anything_else(text: str, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Expression.parse(text, "convert field 'hit_x'")


def test_mapping_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['tre'\]"):
        parse_mapping({"name": "m", "tre": "events", "tree": "t", "events": {"x": "a"}})
    with pytest.raises(ConfigError, match="field 'charge' of object type 'hits' must start with 'hit_'"):
        parse_mapping({"tree": "t", "objects": {"hits": {"charge": "q"}}})
    with pytest.raises(ConfigError, match="layout 'long' needs 'event_column'"):
        parse_mapping({"tree": "t", "layout": "long", "objects": {"hits": {"hit_e": "e"}}})
    with pytest.raises(ConfigError, match="pmt_match.position must list three"):
        parse_mapping({"tree": "t", "objects": {"hits": {"hit_t": "t"}}, "pmt_match": {"position": ["x"]}})


# ------------------------------------------------------------------------------ flat WCSim + geometry


def test_flat_wcsim_positions_matched_to_wcte_pmts(
    tmp_path: Path, flat_file: Path, wcte_geofile: Path
) -> None:
    out = convert(
        tmp_path,
        flat_file,
        "flat_wcsim",
        "detector=from_file",
        f"detector.path={wcte_geofile}",
        "chunk_size=150",
    )
    direct = uproot.open(flat_file)["events"].arrays(library="ak")
    store = open_store(out)
    assert store.n_events == 400
    np.testing.assert_array_equal(store.counts("hits"), ak.to_numpy(ak.num(direct.tube)))
    # positions were the tube's own (1-based id) position + <= 1 cm jitter: the nearest PMT is that tube
    np.testing.assert_array_equal(store.array("hit_pmt"), ak.to_numpy(ak.flatten(direct.tube)) - 1)
    assert store.dtype("hit_pmt") == np.int32 and store.dtype("hit_time") == np.float32
    np.testing.assert_array_equal(store.array("hit_charge"), ak.to_numpy(ak.flatten(direct.charge)))
    assert store.shape("energies") == (400, 1) and store.shape("positions") == (400, 1, 3)
    np.testing.assert_array_equal(store.array("positions")[:, 0, 2], direct.vtx_z.to_numpy())
    assert store.array("labels").tolist() == pdg_label(direct.pid.to_numpy()).tolist()
    d = np.stack([direct.dir_x.to_numpy(), direct.dir_y.to_numpy(), direct.dir_z.to_numpy()], 1).astype(
        np.float64
    )
    np.testing.assert_allclose(np.cos(store.array("angles")[:, 0]), d[:, 1], atol=1e-5)
    assert store.array("event_ids").tolist() == list(range(400))
    assert set(store.array("root_files")) == {str(flat_file)}
    src = store.attrs["source_files"][0]
    assert src["sha256"] == hashlib.sha256(flat_file.read_bytes()).hexdigest()
    assert (src["entry_start"], src["entry_stop"], src["tree"]) == (0, 400, "events")
    assert store.attrs["mapping"]["pmt_match"]["position"] == ["hitx", "hity", "hitz"]
    assert store.attrs["pmt_match"]["n_pmts"] == store.attrs["n_pmts"] == 2014
    assert store.attrs["detector_fingerprint"].startswith("2014/")  # the geometry the hits were matched to
    assert (store.attrs["time_origin"], store.attrs["energy_kind"]) == ("trigger", "total")
    store.validate(n_pmts=2014)


def test_geometry_that_does_not_match_the_data(tmp_path: Path, flat_file: Path) -> None:
    with pytest.raises(
        GeometryError, match=r"hits lie farther than .* detector 'sk'.*geometry does not match"
    ):
        convert(tmp_path, flat_file, "flat_wcsim", "detector=sk")
    with pytest.raises(ConfigError, match="needs a detector"):
        convert(tmp_path, flat_file, "flat_wcsim")
    assert leftovers(tmp_path) == []


def test_converted_store_trains_with_the_geometry_file(
    tmp_path: Path, flat_file: Path, wcte_geofile: Path
) -> None:
    from recoml.training import train
    from tests.helpers import make_cfg

    store = convert(tmp_path, flat_file, "flat_wcsim", "detector=from_file", f"detector.path={wcte_geofile}")
    cfg = make_cfg(
        tmp_path,
        tmp_path,
        ["detector=from_file", f"detector.path={wcte_geofile}", "dataset=from_file", f"dataset.path={store}",
         "dataset.num_workers=0", "dataset.pin_memory=false"],
    )  # fmt: skip
    metrics = train(cfg)
    assert np.isfinite(metrics["train/loss"]) and "test/acc" in metrics


@pytest.mark.slow  # spawns two worker interpreters (~10 s on the shared dev box)
def test_parallel_workers_give_the_same_store(tmp_path: Path, flat_file: Path) -> None:
    one = convert(tmp_path, flat_file, "flat_wcsim_tubes", "chunk_size=100", name="one.h5")
    two = convert(tmp_path, flat_file, "flat_wcsim_tubes", "chunk_size=100", "n_workers=2", name="two.h5")
    a, b = open_store(one), open_store(two)
    assert a.fields == b.fields
    for name in a.fields:
        np.testing.assert_array_equal(a.array(name), b.array(name))
    direct = uproot.open(flat_file)["events"]["tube"].array()
    np.testing.assert_array_equal(a.array("hit_pmt"), ak.to_numpy(ak.flatten(direct)) - 1)


# ------------------------------------------------------------------------------ real ROOT files


def test_hzz_jagged_muons_as_hits(tmp_path: Path, root_dir: Path) -> None:
    path = root_dir / "uproot-HZZ.root"
    store = open_store(convert(tmp_path, path, "hzz", "chunk_size=1000"))
    t = uproot.open(path)["events"]
    assert store.n_events == t.num_entries == 2421
    np.testing.assert_array_equal(store.counts("hits"), t["NMuon"].array(library="np"))
    np.testing.assert_array_equal(store.counts("jets"), t["NJet"].array(library="np"))
    px = ak.to_numpy(ak.flatten(t["Muon_Px"].array()))
    py = ak.to_numpy(ak.flatten(t["Muon_Py"].array()))
    np.testing.assert_array_equal(store.array("hit_px"), px)
    np.testing.assert_allclose(store.array("hit_pt"), np.hypot(px, py), rtol=1e-6)
    assert store.array("jet_id").dtype == np.bool_
    np.testing.assert_array_equal(store.array("met")[:, 1], t["MET_py"].array(library="np"))
    flat, offsets, _ = store.read([5], ["hit_charge"], ())
    assert flat["hit_charge"].tolist() == t["Muon_Charge"].array()[5].tolist()


def test_geant4_long_tree_grouped_by_event(tmp_path: Path, root_dir: Path) -> None:
    path = root_dir / "uproot-from-geant4.root"
    rows = uproot.open(path)["HitStrips"].arrays(library="np")
    numbers, counts = np.unique(rows["Event"], return_counts=True)
    # chunks of 333 rows cut through events: the cut moves to the next event boundary
    store = open_store(convert(tmp_path, path, "geant4_strips", "chunk_size=333"))
    assert store.n_events == len(numbers) == 453
    np.testing.assert_array_equal(store.array("event_ids"), numbers)
    np.testing.assert_array_equal(store.counts("hits"), counts)
    np.testing.assert_array_equal(store.array("hit_energy"), rows["Energy"])
    np.testing.assert_array_equal(store.array("hit_layer"), rows["Laystrip"] // 1000)
    np.testing.assert_array_equal(store.array("hit_strip"), rows["Laystrip"] % 1000)


def test_delphes_particles_and_tracks(tmp_path: Path, root_dir: Path) -> None:
    path = root_dir / "uproot-issue513.root"
    store = open_store(convert(tmp_path, path, "delphes"))
    t = uproot.open(path)["Delphes"]
    assert store.n_events == 10
    np.testing.assert_array_equal(store.counts("particles"), t["Particle_size"].array(library="np"))
    np.testing.assert_array_equal(store.counts("tracks"), t["Track_size"].array(library="np"))
    np.testing.assert_array_equal(
        store.array("particle_pt"), ak.to_numpy(ak.flatten(t["Particle/Particle.PT"].array()))
    )
    assert store.shape("particle_vertex") == (store.n_objects("particles"), 3)
    np.testing.assert_array_equal(
        store.array("event_numbers"), ak.to_numpy(t["Event/Event.Number"].array()[:, 0])
    )


def test_nanoaod_muons_and_jets(tmp_path: Path, root_dir: Path) -> None:
    path = root_dir / "nanoAOD_2015_CMS_Open_Data_ttbar.root"
    store = open_store(convert(tmp_path, path, "nanoaod", "chunk_size=64"))
    t = uproot.open(path)["Events"]
    assert store.n_events == 200
    np.testing.assert_array_equal(store.counts("muons"), t["nMuon"].array(library="np"))
    np.testing.assert_array_equal(store.counts("jets"), t["nJet"].array(library="np"))
    np.testing.assert_array_equal(store.array("jet_pt"), ak.to_numpy(ak.flatten(t["Jet_pt"].array())))
    np.testing.assert_array_equal(store.array("event_numbers"), t["event"].array(library="np"))
    assert store.array("event_numbers").dtype == np.uint64


def test_trackml_directory_to_store(tmp_path: Path, real_data: Path) -> None:
    import pandas as pd

    d = real_data / "trackml"
    store = open_store(convert(tmp_path, d, "trackml"))
    hits = pd.read_csv(d / "event000000001-hits.csv.gz")
    particles = pd.read_csv(d / "event000000001-particles.csv.gz")
    assert store.n_events == 1 and store.array("event_ids").tolist() == [1]
    assert store.n_objects("hits") == len(hits) == 5527 and store.n_objects("particles") == len(particles)
    np.testing.assert_allclose(store.array("hit_x"), hits.x, rtol=1e-6)
    np.testing.assert_array_equal(store.array("hit_layer_id"), hits.layer_id)
    np.testing.assert_array_equal(store.array("particle_nhits"), particles.nhits)
    np.testing.assert_allclose(store.array("particle_pt"), np.hypot(particles.px, particles.py), rtol=1e-6)
    assert store.shape("hit_module_rotation") == (5527, 3, 3)
    assert store.attrs["detectors_file"]["n_modules"] == 18728
    assert len(store.attrs["source_files"]) == 4  # hits, truth, particles, cells


# ------------------------------------------------------------------------------ memory and interruption


def _peak_traced(src: Path, out: Path) -> int:
    mapping = mapping_of("flat_wcsim_tubes")
    tracemalloc.start()
    try:
        convert_root(src, out, mapping, chunk_size=500, progress=False, hash_inputs=False)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_peak_memory_does_not_grow_with_events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from recoml.data.store_hdf5 import ChunkStaging

    # StoreWriter's final copy moves blocks of up to 64 MB, a constant bound larger than these test files;
    # 1 MB blocks let the test see the rest of the pipeline's peak.
    finish = ChunkStaging.finish
    monkeypatch.setattr(ChunkStaging, "finish", lambda self, out, attrs: finish(self, out, attrs, 1 << 20))
    small = write_flat_wcsim(tmp_path / "small.root", 2_000, mean_hits=100, chunk_size=2_000)
    large = write_flat_wcsim(tmp_path / "large.root", 10_000, mean_hits=100, chunk_size=2_000, seed=1)
    peak_small = _peak_traced(small, tmp_path / "small.h5")
    peak_large = _peak_traced(large, tmp_path / "large.h5")
    # 5x the events (~12 MB of hits more than the small file): the peak stays that of a few chunks
    assert open_store(tmp_path / "large.h5").n_events == 10_000
    assert peak_large < 1.3 * peak_small + (1 << 20), (peak_small, peak_large)


_SLOW_CONVERT = """
import sys, time
from recoml.data import store
append = store.StoreWriter.append
def slow(self, chunk):
    append(self, chunk)
    time.sleep(0.2)
store.StoreWriter.append = slow
from recoml.conversion.pipeline import convert_root
from recoml.conversion.mapping import parse_mapping
from omegaconf import OmegaConf
m = parse_mapping(OmegaConf.load(sys.argv[1]))
convert_root(sys.argv[2], sys.argv[3], m, chunk_size=20, progress=False)
"""


def test_killed_conversion_leaves_no_output_and_restarts_clean(tmp_path: Path, flat_file: Path) -> None:
    out = tmp_path / "events.h5"
    mapping = CONF_DIR / "convert" / "flat_wcsim_tubes.yaml"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    cmd = [sys.executable, "-c", _SLOW_CONVERT, str(mapping), str(flat_file), str(out)]
    kill_while_writing(cmd, ".events.h5.recoml-tmp-*", tmp_path, env=env)
    assert not out.exists() and any(
        tmp_path.glob(".events.h5.recoml-tmp-*")
    )  # killed: no output, only temporaries
    convert_root(flat_file, out, mapping_of("flat_wcsim_tubes"), chunk_size=100, progress=False)
    assert leftovers(tmp_path) == ["events.h5"]  # restart removed the dead run's temporaries
    assert open_store(out).n_events == 400


# ------------------------------------------------------------------------------ bad input


def test_not_a_root_file(tmp_path: Path) -> None:
    bad = tmp_path / "notes.root"
    bad.write_text("this is not ROOT\n")
    with pytest.raises(DataError, match=r"notes\.root: not a ROOT file"):
        convert(tmp_path, bad, "flat_wcsim_tubes")
    assert leftovers(tmp_path) == []


def test_missing_tree_lists_trees(tmp_path: Path, root_dir: Path) -> None:
    with pytest.raises(
        DataError, match=r"no tree 'Events'; trees found: \['events'\] \(did you mean \['events'\]"
    ):
        convert(tmp_path, root_dir / "uproot-HZZ.root", "hzz", "convert.tree=Events")
    assert leftovers(tmp_path) == []


def test_missing_branch_lists_closest_names(tmp_path: Path, root_dir: Path) -> None:
    with pytest.raises(DataError, match=r"no branch 'Muon_Pxx'; closest names: \['Muon_Px'"):
        convert(tmp_path, root_dir / "uproot-HZZ.root", "hzz", "convert.objects.hits.hit_px=Muon_Pxx")
    assert leftovers(tmp_path) == []


def test_object_branch_points_to_flattening(tmp_path: Path, root_dir: Path) -> None:
    with pytest.raises(
        DataError, match=r"'Jet/Jet.Constituents' .* TRefArray.* cannot read as flat .*flattened first"
    ):
        convert(
            tmp_path,
            root_dir / "uproot-issue513.root",
            "delphes",
            "+convert.aliases.constituents=Jet/Jet.Constituents",
            "+convert.events.n_constituents=constituents",
        )
    assert leftovers(tmp_path) == []


def test_inconsistent_hit_lengths_name_the_event(tmp_path: Path) -> None:
    path = write_tree(
        tmp_path / "ragged.root",
        {
            "tube": ak.Array([[1, 2], [3], [4, 5, 6]]),
            "charge": ak.Array([[1.0, 1.0], [2.0], [1.0, 2.0]]),  # entry 2: 2 charges for 3 tubes
            "time": ak.Array([[5.0, 6.0], [7.0], [1.0, 2.0, 3.0]]),
            **{
                k: np.ones(3, np.float32)
                for k in ("energy", "vtx_x", "vtx_y", "vtx_z", "dir_x", "dir_y", "dir_z")
            },
            "pid": np.array([11, 13, 22], np.int32),
        },
    )
    with pytest.raises(
        DataError,
        match=r"in entry 2 the per-hit fields 'hit_pmt' and 'hit_charge' have different lengths \(3 vs 2\)",
    ):
        convert(tmp_path, path, "flat_wcsim_tubes")
    assert leftovers(tmp_path) == []


@pytest.fixture
def nan_file(tmp_path: Path) -> Path:
    return write_tree(
        tmp_path / "nan.root",
        {
            "tube": ak.Array([[1, 2], [3], [4, 5, 6], [7]]),
            "charge": ak.Array([[1.0, np.nan], [2.0], [1.0, 2.0, 3.0], [4.0]]),
            "time": ak.Array([[5.0, 6.0], [7.0], [np.nan, 2.0, np.nan], [8.0]]),
            "energy": np.array([100.0, np.nan, 300.0, 400.0], np.float32),
            **{k: np.ones(4, np.float32) for k in ("vtx_x", "vtx_y", "vtx_z", "dir_x", "dir_y", "dir_z")},
            "pid": np.array([11, 13, 22, 111], np.int32),
        },
    )


def test_nan_values_refused_with_their_count(tmp_path: Path, nan_file: Path) -> None:
    with pytest.raises(
        DataError,
        match=r"4 NaN/inf value\(s\) in .*'energies' \(1\).*'hit_charge' \(1\).*'hit_time' \(2\).*"
        "nan_policy=drop",
    ):
        convert(tmp_path, nan_file, "flat_wcsim_tubes")
    assert leftovers(tmp_path) == []


def test_nan_values_dropped_when_asked(tmp_path: Path, nan_file: Path) -> None:
    store = open_store(convert(tmp_path, nan_file, "flat_wcsim_tubes", "nan_policy=drop"))
    # entry 1 (NaN energy) is dropped with its hit; the NaN hits of entries 0 and 2 are dropped
    assert store.array("event_ids").tolist() == [0, 2, 3]
    assert store.counts("hits").tolist() == [1, 1, 1]
    assert store.array("hit_pmt").tolist() == [0, 4, 6]
    stats = store.attrs["conversion_stats"]
    assert stats["dropped_events"] == 1 and stats["dropped_objects"] == {"hits": 4}
    assert stats["nan_counts"] == {"energies": 1, "hit_charge": 1, "hit_time": 2}


def test_existing_output_needs_overwrite(tmp_path: Path, flat_file: Path) -> None:
    out = tmp_path / "out.h5"
    out.write_bytes(b"precious")
    with pytest.raises(DataError, match=r"out\.h5 already exists; set overwrite=true"):
        convert(tmp_path, flat_file, "flat_wcsim_tubes")
    assert out.read_bytes() == b"precious" and leftovers(tmp_path) == ["out.h5"]
    convert(tmp_path, flat_file, "flat_wcsim_tubes", "overwrite=true")
    assert h5py.is_hdf5(out) and open_store(out).n_events == 400


def test_command_line_error_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    missing = tmp_path / "nothing" / "*.root"
    res = subprocess.run(
        [sys.executable, "-m", "recoml.convert", f"input={missing}", f"output={tmp_path / 'o.h5'}",
         f"paths.log_dir={tmp_path / 'logs'}"],
        capture_output=True, text=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert res.returncode == 2, res.stderr
    assert res.stderr.strip().splitlines()[-1] == f"error: input '{missing}' matches no file"


def test_expression_failing_on_the_data_names_the_field(tmp_path: Path, root_dir: Path) -> None:
    # some HZZ events have no muon: taking the first muon of every event fails, naming field and entries
    with pytest.raises(
        DataError, match=r"entries 0-2420\).*field 'first_px' = 'Muon_Px\[:, 0\]' cannot be evaluated"
    ):
        convert(tmp_path, root_dir / "uproot-HZZ.root", "hzz", "+convert.events.first_px='Muon_Px[:, 0]'")
    assert leftovers(tmp_path) == []
