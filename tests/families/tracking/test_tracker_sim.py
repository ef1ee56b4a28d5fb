"""Tracker geometry and toy helix simulation: hits on the right circle and layers, determinism, the CLI."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from recoml.conf import CONFIG_MODULE
from recoml.data.store import open_store
from recoml.errors import ConfigError, GeometryError
from recoml.families.tracking.detector import (
    BARREL,
    DISK,
    TrackerDetector,
    TrackerLayer,
    load_trackml_detector,
)
from recoml.families.tracking.matching import TargetSelection, is_primary
from recoml.families.tracking.simulation import (
    LAMBDA_OVER_X0_SILICON,
    TrackerSimConfig,
    highland,
    propagate,
    simulate_tracker,
    simulate_tracker_event,
    simulate_tracker_to_store,
)
from recoml.families.tracking.trackml import read_trackml_event
from recoml.utils.cli import recoml_cause
from tests.conftest import CONF_DIR
from tests.helpers import DATA_DIR


@pytest.fixture(scope="module")
def toy() -> TrackerDetector:
    return instantiate(OmegaConf.load(CONF_DIR / "detector" / "toy_tracker.yaml"))


def fit_circle(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Algebraic (Kasa) circle fit: centre and radius."""
    a = np.stack([x, y, np.ones_like(x)], 1)
    b = x**2 + y**2
    cx2, cy2, c = np.linalg.lstsq(a, b, rcond=None)[0]
    cx, cy = cx2 / 2, cy2 / 2
    return cx, cy, math.sqrt(c + cx**2 + cy**2)


def test_toy_tracker_layout(toy: TrackerDetector) -> None:
    assert toy.n_layers == 10 + 38 and toy.bfield == 2.0
    assert int((~toy.is_disk).sum()) == 10
    assert toy.radius == 1020.0 and toy.half_height == 2950.0
    # Global layers follow (volume_id, layer_id); TrackML ids map back.
    assert toy.layer_index(np.array([7, 8, 18]), np.array([2, 2, 12])).tolist() == [0, 7, 47]
    with pytest.raises(GeometryError, match=r"\(9, 16\)"):
        toy.layer_index(np.array([9]), np.array([16]))


@pytest.mark.parametrize("charge", [1, -1])
def test_helix_hits_lie_on_the_expected_circle(toy: TrackerDetector, charge: int) -> None:
    pt, phi0 = 2.0, 0.3
    hits = propagate(
        toy, np.zeros((1, 3)), np.array([pt]), np.array([0.2]), np.array([phi0]), np.array([charge])
    )
    expected_r = pt / (0.299792458e-3 * 2.0)  # R = pT / (0.3 B), mm with pT in GeV and B in T
    assert len(hits) == 10  # every barrel layer, no disk at eta 0.2
    assert hits.layer.tolist() == list(range(7, 11)) + list(range(24, 28)) + [40, 41]
    cx, cy, r = fit_circle(np.r_[0.0, hits.x], np.r_[0.0, hits.y])
    assert r == pytest.approx(expected_r, rel=1e-6)
    # The centre is on the right of the momentum for positive charge (clockwise turn seen from +z).
    side = np.sign(math.cos(phi0) * cy - math.sin(phi0) * cx)
    assert side == -charge
    # Hits sit exactly on their layers: barrel radius, and z = R t sinh(eta) along the turn.
    np.testing.assert_allclose(np.hypot(hits.x, hits.y), toy.layer_radius[hits.layer], rtol=1e-9)
    t = 2 * np.arcsin(toy.layer_radius[hits.layer] / (2 * expected_r))
    np.testing.assert_allclose(hits.turn, t, rtol=1e-9)
    np.testing.assert_allclose(hits.z, expected_r * t * math.sinh(0.2), rtol=1e-9)
    # Hand-computed hit on the outer layer (r = 1020 mm): chord angle asin(r / 2R) from the start direction.
    chord_phi = phi0 - charge * math.asin(1020.0 / (2 * expected_r))
    assert math.atan2(hits.y[-1], hits.x[-1]) == pytest.approx(chord_phi, abs=1e-9)
    # Momentum at the hit is tangent: it has turned by t.
    np.testing.assert_allclose(np.arctan2(hits.tpy, hits.tpx), phi0 - charge * t, atol=1e-9)


def test_forward_track_crosses_disks_in_order(toy: TrackerDetector) -> None:
    # eta 3.5 passes the pixel barrel's end (z = 32 mm * sinh(3.5) > 491 mm): only disks.
    hits = propagate(toy, np.zeros((1, 3)), np.array([10.0]), np.array([3.5]), np.array([0.0]), np.array([1]))
    layers = hits.layer
    assert toy.is_disk[layers].all()
    z = toy.layer_z[layers]
    assert (np.diff(z) > 0).all() and (z > 0).all()
    np.testing.assert_allclose(hits.z, z)
    r = np.hypot(hits.x, hits.y)
    assert ((r >= toy.layer_r_min[layers]) & (r <= toy.layer_r_max[layers])).all()


def test_low_pt_particle_stops_at_its_turning_point(toy: TrackerDetector) -> None:
    # R = 0.14 / (0.3 * 2) ~ 233 mm: reaches r = 2R ~ 467 mm, so barrel layers up to 360 mm only.
    hits = propagate(
        toy, np.zeros((1, 3)), np.array([0.14]), np.array([0.0]), np.array([1.0]), np.array([-1])
    )
    assert toy.layer_radius[hits.layer].max() == 360.0
    assert len(np.unique(hits.layer)) == len(hits)  # the incoming branch is not recorded


def test_simulation_is_deterministic_and_chunk_independent(toy: TrackerDetector) -> None:
    cfg = TrackerSimConfig(n_particles=50)
    a = simulate_tracker(toy, 4, cfg, seed=7)
    b = simulate_tracker(toy, 4, cfg, seed=7)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    first, second = (
        simulate_tracker(toy, 2, cfg, seed=7),
        simulate_tracker(toy, 2, cfg, seed=7, first_event=2),
    )
    np.testing.assert_array_equal(a["hit_x"], np.concatenate([first["hit_x"], second["hit_x"]]))
    c = simulate_tracker(toy, 4, cfg, seed=8)
    assert not np.array_equal(a["particle_pt"], c["particle_pt"])


def test_event_content_and_smearing(toy: TrackerDetector) -> None:
    cfg = TrackerSimConfig(n_particles=400, noise_fraction=0.2, pt_range=(1.0, 10.0), double_hit_fraction=0.0)
    ev = simulate_tracker_event(toy, cfg, np.random.default_rng(1))
    pid = ev["hit_particle_id"]
    assert 0.15 < (pid == 0).mean() < 0.25
    ids, counts = np.unique(pid[pid > 0], return_counts=True)
    nhits = dict(zip(ev["particle_id"], ev["particle_nhits"]))
    assert [nhits[i] for i in ids] == counts.tolist()
    assert sum(nhits.values()) == counts.sum()
    layer = toy.layer_index(ev["hit_volume_id"], ev["hit_layer_id"])
    assert (np.diff(layer) >= 0).all()  # read-out order, no truth in it
    module = toy.module_index(layer, ev["hit_module_id"])
    assert module.min() >= 0 and module.max() < toy.n_modules
    # Barrel hits keep their exact radius, disk hits their z; the other coordinates are smeared.
    barrel = ~toy.is_disk[layer]
    np.testing.assert_allclose(
        np.hypot(ev["hit_x"], ev["hit_y"])[barrel], toy.layer_radius[layer][barrel], rtol=1e-5
    )
    np.testing.assert_allclose(ev["hit_z"][~barrel], toy.layer_z[layer][~barrel])
    # Smearing: pixel-barrel z residuals have the configured sigma (~16 um); same random stream unsmeared.
    exact = simulate_tracker_event(
        toy, TrackerSimConfig(**{**cfg.__dict__, "resolution_scale": 0.0}), np.random.default_rng(1)
    )
    keys = []
    for e in (ev, exact):
        sel = (e["hit_volume_id"] == 8) & (e["hit_particle_id"] > 0)
        order = np.lexsort((e["hit_layer_id"][sel], e["hit_particle_id"][sel]))
        keys.append(e["hit_z"][sel][order])
    assert np.std(keys[0] - keys[1]) == pytest.approx(0.0162, rel=0.15)


def test_unknown_option_is_named() -> None:
    with pytest.raises(ConfigError, match="n_particle"):
        TrackerSimConfig.from_options({"n_particle": 5})
    with pytest.raises(ConfigError, match="pt_range"):
        TrackerSimConfig(pt_range=(0.0, 1.0))


def test_bad_layers_are_geometry_errors() -> None:
    with pytest.raises(GeometryError, match="radius"):
        TrackerDetector("t", 2.0, [TrackerLayer(8, 2, BARREL, radius=-1.0, half_length=10)])
    with pytest.raises(GeometryError, match="r_min"):
        TrackerDetector("t", 2.0, [TrackerLayer(9, 2, DISK, z=100.0, r_min=50.0, r_max=10.0)])


def test_store_has_tracking_layout(toy: TrackerDetector, tmp_path: Path) -> None:
    out, splits = simulate_tracker_to_store(toy, tmp_path / "t.h5", n_events=5, chunk_size=2, n_particles=30)
    store = open_store(out)
    assert store.n_events == 5 and splits.exists()
    assert {"hit_x", "hit_particle_id", "hit_module_id", "hit_tpx"} <= set(store.object_types["hits"])
    assert {"particle_pt", "particle_nhits", "particle_vz"} <= set(store.object_types["particles"])
    assert store.attrs["detector"] == "toy_tracker"
    particles = store.read(np.arange(5), ["particle_id"], (), object_type="particles")[0]
    primaries = is_primary(particles["particle_id"])
    assert primaries.sum() == 30 * 5 and (store.counts("particles") >= 30).all()


def test_trackml_detector_needs_an_explicit_path() -> None:
    """The config names no file of its own: instantiating it without detector.path says what to set."""
    cfg = OmegaConf.load(CONF_DIR / "detector" / "trackml.yaml")
    assert cfg.path is None
    with pytest.raises(Exception) as info:
        instantiate(cfg)
    err = recoml_cause(info.value)
    assert isinstance(err, ConfigError) and "detector.path=" in str(err) and "\n" not in str(err)


def test_trackml_detector_from_file(real_data: Path) -> None:
    det = load_trackml_detector(real_data / "trackml" / "detectors.csv.gz")
    assert det.n_layers == 48 and det.n_modules == 18728
    assert int((~det.is_disk).sum()) == 10
    radii = det.layer_radius[~det.is_disk]
    np.testing.assert_allclose(radii[:4], [32, 72, 116, 172], atol=0.5)
    # Simulated hits on the real geometry take the id of the nearest real module.
    ev = simulate_tracker_event(
        det, TrackerSimConfig(n_particles=20, noise_fraction=0), np.random.default_rng(0)
    )
    layer = det.layer_index(ev["hit_volume_id"], ev["hit_layer_id"])
    centre = det.module_centers[det.module_index(layer, ev["hit_module_id"])]
    pos = np.stack([ev["hit_x"], ev["hit_y"], ev["hit_z"]], 1)
    assert np.linalg.norm(pos - centre, axis=1).max() < 120.0


def test_simulate_entry_point_for_a_tracker(tmp_path: Path) -> None:
    """``python -m recoml.simulate detector=toy_tracker`` (its Hydra main, called in this process)."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict

    from recoml.simulate import main

    GlobalHydra.instance().clear()
    overrides = ["detector=toy_tracker", "n_events=3", "tracker.n_particles=20", f"paths.root_dir={tmp_path}"]
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        cfg = compose(config_name="simulate", return_hydra_config=True, overrides=overrides)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(tmp_path / "run")
        cfg.hydra.job.num = 0
    HydraConfig().set_config(cfg)
    main(cfg)
    store = open_store(tmp_path / "data" / "toy_toy_tracker.h5")
    assert store.n_events == 3 and (tmp_path / "data" / "toy_toy_tracker_splits.npz").exists()
    assert (tmp_path / "run" / "config.yaml").exists()
    # The existing output is refused: one line on stderr and exit code 2 (report_errors).
    with pytest.raises(SystemExit) as exit_info:
        main(cfg)
    assert exit_info.value.code == 2


# -- issue 13: multiple scattering, double hits, noise at TrackML's rates ------------------------------------
def _extra_hit_fraction(pid: np.ndarray, layer: np.ndarray) -> float:
    """Particle hits beyond the first of their (particle, layer): the overlap double hits."""
    real = pid > 0
    pairs = np.unique(np.stack([pid[real], layer[real]], 1), axis=0)
    return 1.0 - len(pairs) / int(real.sum())


def test_highland_angle_hand_computed() -> None:
    # 1 GeV through 2% X0: 13.6 MeV / 1 GeV x sqrt(0.02) x (1 + 0.038 ln 0.02) = 1.637 mrad.
    assert highland(np.array([1.0]), 0.02)[0] == pytest.approx(0.0136 * math.sqrt(0.02) * 0.851339, rel=1e-5)
    assert highland(np.array([2.0]), 0.02)[0] == pytest.approx(highland(np.array([1.0]), 0.02)[0] / 2)
    assert highland(np.array([1.0]), 0.0)[0] == 0.0


def test_multiple_scattering_displaces_later_hits_as_highland_says(toy: TrackerDetector) -> None:
    """1 GeV central particles: the rms displacement of each hit from the exact helix is theta0 x
    sqrt(sum over earlier layers of (L - L_i)^2) per plane (L the path length); none without material."""
    base = {"n_particles": 300, "pt_range": (1.0, 1.0), "eta_range": (-0.3, 0.3), "noise_fraction": 0.0,
            "double_hit_fraction": 0.0, "resolution_scale": 0.0, "vertex_sigma": (0.0, 0.0, 0.0),
            "lambda_over_x0": 0.0}  # fmt: skip
    exact = simulate_tracker_event(toy, TrackerSimConfig(**base, layer_x0=0.0), np.random.default_rng(3))
    ms = simulate_tracker_event(toy, TrackerSimConfig(**base, layer_x0=0.02), np.random.default_rng(3))
    ordered = []
    for e in (exact, ms):
        o = np.lexsort((np.hypot(e["hit_x"], e["hit_y"]), e["hit_particle_id"]))
        ordered.append(np.stack([e["hit_x"][o], e["hit_y"][o], e["hit_z"][o]], 1).astype(np.float64))
    assert len(ordered[0]) == len(ordered[1])
    r = np.hypot(ordered[0][:, 0], ordered[0][:, 1])
    shift = np.linalg.norm(ordered[1] - ordered[0], axis=1)
    radii = np.unique(np.round(r, 1))
    outer = np.isclose(r, radii[-1], atol=0.5)
    # Path lengths from the beam line (eta ~ 0, R = 1 GeV / (0.3 x 2 T) = 1.67 m: nearly straight).
    theta0 = highland(np.array([1.0]), 0.02)[0]
    expected = theta0 * math.sqrt(2 * np.sum((radii[-1] - radii[:-1]) ** 2))
    assert np.sqrt(np.mean(shift[outer] ** 2)) == pytest.approx(expected, rel=0.2)
    assert shift[np.isclose(r, radii[0], atol=0.5)].max() < 1e-3  # the first layer sees no kink yet


def test_double_hits_and_noise_at_the_real_trackml_rates(toy: TrackerDetector) -> None:
    """The real TrackML event (tests/data/trackml) has ~24 % of its particle hits as second hits on the
    same layer and ~15 % noise; the toy's defaults reproduce both."""
    real = read_trackml_event(DATA_DIR / "trackml", "event000000001")
    real_layer = real["hit_volume_id"].astype(np.int64) * 100 + real["hit_layer_id"]
    real_extra = _extra_hit_fraction(real["hit_particle_id"], real_layer)
    real_noise = float(np.mean(real["hit_particle_id"] == 0))
    ev = simulate_tracker_event(toy, TrackerSimConfig(n_particles=600), np.random.default_rng(0))
    layer = toy.layer_index(ev["hit_volume_id"], ev["hit_layer_id"])
    toy_extra = _extra_hit_fraction(ev["hit_particle_id"], layer)
    toy_noise = float(np.mean(ev["hit_particle_id"] == 0))
    assert toy_extra == pytest.approx(real_extra, abs=0.04), (toy_extra, real_extra)
    assert toy_noise == pytest.approx(real_noise, abs=0.03), (toy_noise, real_noise)
    single = simulate_tracker_event(
        toy, TrackerSimConfig(n_particles=300, double_hit_fraction=0.0), np.random.default_rng(0)
    )
    single_layer = toy.layer_index(single["hit_volume_id"], single["hit_layer_id"])
    assert _extra_hit_fraction(single["hit_particle_id"], single_layer) == 0.0


def _secondary_fractions(particle_id: np.ndarray, nhits: np.ndarray, hit_particle_id: np.ndarray) -> tuple:
    """Secondaries among the particles with hits, and among the particle hits."""
    with_hits = nhits > 0
    real = hit_particle_id != 0
    return 1 - is_primary(particle_id[with_hits]).mean(), 1 - is_primary(hit_particle_id[real]).mean()


def test_secondaries_at_the_real_trackml_rate_with_production_vertices_on_layers(real_data: Path) -> None:
    """Hadronic interactions in the layers (probability x/X0 / (lambda_I/X0), silicon, PDG): the real TrackML
    event has 16 % of its particles with hits and 7.9 % of its particle hits from secondaries (generation
    > 0); the toy on the same geometry agrees, its secondaries start on a layer where their parent ends."""
    assert LAMBDA_OVER_X0_SILICON == pytest.approx(46.52 / 9.370)
    real = read_trackml_event(real_data / "trackml", "event000000001")
    pid, hit_pid = real["particle_id"], real["hit_particle_id"]
    ids, counts = np.unique(hit_pid[hit_pid != 0], return_counts=True)
    real_nhits = np.zeros(len(pid), np.int64)
    real_nhits[np.isin(pid, ids)] = counts[np.searchsorted(ids, pid[np.isin(pid, ids)])]
    real_particles, real_hits = _secondary_fractions(pid, real_nhits, hit_pid)
    assert (real_particles, real_hits) == (pytest.approx(0.160, abs=0.005), pytest.approx(0.079, abs=0.005))

    det = load_trackml_detector(real_data / "trackml" / "detectors.csv.gz")
    ev = simulate_tracker_event(det, TrackerSimConfig(n_particles=700), np.random.default_rng(3))
    toy_particles, toy_hits = _secondary_fractions(
        ev["particle_id"], ev["particle_nhits"], ev["hit_particle_id"]
    )
    assert toy_particles == pytest.approx(real_particles, abs=0.05)
    assert toy_hits == pytest.approx(real_hits, abs=0.03)

    secondary = ~is_primary(ev["particle_id"])
    parents = ev["particle_parent_id"][secondary]
    assert (ev["particle_parent_id"][~secondary] == 0).all() and np.isin(
        parents, ev["particle_id"][~secondary]
    ).all()
    # Production vertex on a layer: a barrel radius or a disk plane of the detector, where the parent's
    # last hit is (the parent stops in the interaction).
    vertex = np.stack([ev[f"particle_v{a}"][secondary] for a in "xyz"], 1).astype(np.float64)
    r = np.hypot(vertex[:, 0], vertex[:, 1])
    on_barrel = np.isclose(r[:, None], det.layer_radius[~det.is_disk][None, :], atol=0.01).any(1)
    on_disk = np.isclose(vertex[:, 2:3], det.layer_z[det.is_disk][None, :], atol=0.01).any(1)
    assert (on_barrel | on_disk).all()
    assert np.percentile(r, 90) > 300  # produced all through the detector, not at the beam
    hit_r = np.hypot(ev["hit_x"], ev["hit_y"]).astype(np.float64)
    for parent, v_r in zip(parents[:50], r[:50]):
        assert hit_r[ev["hit_particle_id"] == parent].max() < v_r + 10.0  # double hits: a few mm out
    # Low pT: none is a target of the pT > 1 GeV selection; the selections leave secondaries out.
    assert np.percentile(ev["particle_pt"][secondary], 50) < 0.3
    n = int(secondary.sum())
    select = dict(
        pt=np.full(n, 2.0), eta=np.zeros(n), nhits=np.full(n, 5), particle_id=ev["particle_id"][secondary]
    )
    assert TargetSelection().select(**select).all()
    assert not TargetSelection(primary_only=True).select(**select).any()
    assert TargetSelection(max_production_radius=10.0).select(**select, production_radius=r).sum() == 0

    none = simulate_tracker_event(
        det, TrackerSimConfig(n_particles=200, lambda_over_x0=0.0), np.random.default_rng(3)
    )
    assert is_primary(none["particle_id"]).all() and len(none["particle_id"]) == 200
