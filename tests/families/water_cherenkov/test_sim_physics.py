"""Physics of the toy water-Cherenkov simulation against hand-computed expectations.

Geometry helpers used below: for a PMT at P and a straight track from V along w, write
a = (P - V).w and b = |(P - V) - a w|. A photon emitted at the Cherenkov angle theta from the track point
at distance s reaches P only if tan(theta) = b / (a - s), i.e. from s* = a - b / tan(theta); its arrival
time is s*/c + (b / sin theta) n / c, which is also the earliest time any light from a beta = 1 track
can reach P (Fermat), so no hit may come earlier than that.
"""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from recoml.conf import CONF_DIR
from recoml.errors import ConfigError
from recoml.families.water_cherenkov import (
    PARTICLES,
    PhysicsConfig,
    build_cylinder,
    directions_to_angles,
    invariant_mass,
    light_sources,
    pi0_decay,
    simulate,
    simulate_particles,
)
from recoml.families.water_cherenkov.digitizer import spe_mean
from recoml.families.water_cherenkov.particles import ELECTRON_MASS, MUON_MASS, PI0_MASS, isotropic_directions

CONF = CONF_DIR / "detector"
C = 29.9792458  # cm/ns
N_WATER = 1.33  # phase index: Cherenkov angle
N_GROUP = 1.38  # group index: photon speed
#: The geometric tests below look at direct light in the vertex frame: no trigger, no scattering, no
#: reflection, one group index, muons without multiple scattering, delta rays and decay electrons.
DIRECT = {
    "trigger": False,
    "scattering_length": float("inf"),
    "pmt_reflectivity": 0.0,
    "wall_reflectivity": 0.0,
    "chromatic_dispersion": False,
    "muon_multiple_scattering": False,
    "muon_delta_rays": False,
    "decay_electrons": False,
}
NO_DARK = PhysicsConfig(dark_rate=0.0, **DIRECT)


def _detector(name: str):
    cfg = OmegaConf.to_container(OmegaConf.load(CONF / f"{name}.yaml"))
    cfg.pop("_target_")
    return build_cylinder(**cfg)


@pytest.fixture(scope="module")
def wcte():
    return _detector("wcte")


@pytest.fixture(scope="module")
def hk():
    return _detector("hk")


def _events(hits: dict[str, np.ndarray]) -> np.ndarray:
    """Event index of every hit."""
    off = np.append(hits["event_hits_index"], len(hits["hit_pmt"]))
    return np.repeat(np.arange(len(off) - 1), np.diff(off))


def _cherenkov_angle(kinetic: float, mass: float) -> float:
    e = kinetic + mass
    beta = np.sqrt(e * e - mass * mass) / e
    return float(np.arccos(1.0 / (beta * N_WATER)))


def _track_geometry(p: np.ndarray, v: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rel = p - v
    a = np.sum(rel * w, axis=1)
    b = np.linalg.norm(rel - a[:, None] * w, axis=1)
    return a, b


def _earliest_light(
    p: np.ndarray, v: np.ndarray, w: np.ndarray, theta: float, n: float = N_GROUP
) -> np.ndarray:
    """Arrival (ns) at p of light emitted at angle theta from a beta = 1 track starting at v along w at
    t = 0 and travelling at c / n (for theta = arccos(1 / n) the earliest any light can arrive)."""
    a, b = _track_geometry(p, v, w)
    s_star = a - b / np.tan(theta)
    t_cone = s_star / C + b / np.sin(theta) * n / C
    t_vertex = np.linalg.norm(p - v, axis=1) * n / C
    return np.where(s_star > 0, t_cone, t_vertex)


def _single(detector, kind, energy, n, physics=NO_DARK, seed=0, vertex=(0.0, 0.0, 0.0), direction=None):
    rng = np.random.default_rng(seed)
    v = np.tile(np.asarray(vertex, dtype=float), (n, 1))
    w = (
        isotropic_directions(n, np.random.default_rng(seed + 1000))
        if direction is None
        else np.tile(np.asarray(direction, dtype=float), (n, 1))
    )
    hits = simulate_particles(detector, [kind] * n, np.full(n, float(energy)), v, w, rng, physics)
    return hits, v, w


# ---------------------------------------------------------------------------------------------- rings


def test_muon_ring_peaks_at_cherenkov_angle(hk):
    """A 300 MeV muon's track (~120 cm) is short next to HK's ~30 m to the wall, so the angle between
    the muon direction and (PMT - vertex) of the charge has a sharp edge at the Cherenkov angle at the
    vertex (38.9 deg) and peaks just inside it: light from further along the track, where the muon is
    slower and its cone narrower, lands inside the ring; multiple scattering (2 deg) and the PMT pitch
    (1.8 deg at 30 m) blur the edge by a degree or two."""
    hits, v, w = _single(hk, "mu-", 300.0, 20)
    ev = _events(hits)
    rel = hk.pmt_positions[hits["hit_pmt"]] - v[ev]
    ang = np.degrees(np.arccos(np.sum(rel * w[ev], 1) / np.linalg.norm(rel, axis=1)))
    theta = np.degrees(_cherenkov_angle(300.0, MUON_MASS))
    q = hits["hit_charge"]
    hist, edges = np.histogram(ang, bins=np.arange(0.0, 90.5, 1.0), weights=q)
    peak = edges[np.argmax(hist)] + 0.5
    assert theta - 3.5 <= peak <= theta + 0.5, (peak, theta)
    order = np.argsort(ang)
    edge = ang[order][np.searchsorted(np.cumsum(q[order]), 0.95 * q.sum())]  # 95% charge quantile
    assert theta - 1.0 <= edge <= theta + 3.0, (edge, theta)
    assert q[ang > theta + 5.0].sum() < 0.02 * q.sum()  # nothing outside the ring but scattering


def test_muon_light_comes_from_the_track_at_the_cherenkov_angle(hk):
    """Each hit PMT must be seen from some point of the emitting track at that point's Cherenkov angle
    arccos(1/(beta(s) n)) (beta falls as the muon loses 2 MeV/cm). Without multiple scattering the
    only slack is the PMT size (25 cm at ~30 m, 0.5 deg); with it, a few degrees."""
    kinetic = 1000.0
    e_thr = MUON_MASS / np.sqrt(1.0 - 1.0 / N_WATER**2)
    length = (kinetic + MUON_MASS - e_thr) / 2.0  # ~473 cm to threshold, well inside HK
    s = np.linspace(0.0, length, 400)
    e = kinetic + MUON_MASS - 2.0 * s
    theta_s = np.degrees(np.arccos(np.minimum(e / (N_WATER * np.sqrt(e * e - MUON_MASS**2)), 1.0)))
    for sigma, tol, frac in ((0.0, 1.0, 0.95), (2.0, 5.0, 0.95)):
        phys = PhysicsConfig(dark_rate=0.0, **(DIRECT | {"muon_angle_sigma": sigma}))
        hits, v, w = _single(hk, "mu-", kinetic, 10, physics=phys)
        ev = _events(hits)
        a, b = _track_geometry(hk.pmt_positions[hits["hit_pmt"]], v[ev], w[ev])
        seen = np.degrees(np.arctan2(b[:, None], a[:, None] - s[None, :]))  # angle from track point s
        residual = np.abs(seen - theta_s[None, :]).min(axis=1)
        q = hits["hit_charge"]
        assert q[residual < tol].sum() > frac * q.sum(), (sigma, np.percentile(residual, [50, 90, 99]))


def test_electron_rings_are_fuzzier_than_muon_rings(hk):
    spreads = {}
    for kind in ("mu-", "e-"):
        hits, v, w = _single(hk, kind, 500.0, 10)
        ev = _events(hits)
        rel = hk.pmt_positions[hits["hit_pmt"]] - v[ev]
        ang = np.degrees(np.arccos(np.sum(rel * w[ev], 1) / np.linalg.norm(rel, axis=1)))
        spreads[kind] = np.sqrt(np.cov(ang, aweights=hits["hit_charge"]))
    assert spreads["e-"] > 2.0 * spreads["mu-"], spreads
    assert spreads["mu-"] < 8.0


# ---------------------------------------------------------------------------------------------- light


def test_total_charge_rises_with_energy(wcte):
    totals = {}
    for energy in (200.0, 800.0):
        hits, _, _ = _single(wcte, "e-", energy, 40)
        totals[energy] = hits["hit_charge"].sum() / 40
    assert totals[800.0] > 2.5 * totals[200.0], totals


def test_light_yield_in_documented_range(wcte, hk):
    """500 MeV electrons at the centre: a few hundred hits in WCTE, about three and a half thousand p.e. of
    direct light in HK."""
    hits, _, _ = _single(wcte, "e-", 500.0, 20)
    assert 250 < len(hits["hit_pmt"]) / 20 < 700
    hits, _, _ = _single(hk, "e-", 500.0, 5)
    assert 2500 < hits["hit_charge"].sum() / 5 < 4500


def test_no_light_below_cherenkov_threshold(wcte):
    # muon threshold: T = m (1/sqrt(1 - 1/n^2) - 1) = 54.6 MeV
    hits, _, _ = _single(wcte, "mu-", 50.0, 20)
    assert len(hits["hit_pmt"]) == 0
    hits, _, _ = _single(wcte, "mu-", 70.0, 20)
    assert len(hits["hit_pmt"]) > 0


# ---------------------------------------------------------------------------------------------- time


def _muon_cone_residuals(detector, n: int, jitter: float, indices: tuple[float, ...]) -> list[np.ndarray]:
    """Hit time minus the cone-light expectation, for 1 GeV muons from the centre along x, per
    travel index (light on the Cherenkov cone of the phase index)."""
    phys = PhysicsConfig(dark_rate=0.0, time_jitter=jitter, **DIRECT)
    hits, v, w = _single(detector, "mu-", 1000.0, n, physics=phys, direction=(1.0, 0.0, 0.0))
    ev = _events(hits)
    p = detector.pmt_positions[hits["hit_pmt"]]
    a, b = _track_geometry(p, v[ev], w[ev])
    theta = _cherenkov_angle(1000.0, MUON_MASS)
    on_cone = a - b / np.tan(theta) > 0
    return [(hits["hit_time"] - _earliest_light(p, v[ev], w[ev], theta, k))[on_cone] for k in indices]


def test_muon_hit_times_follow_light_travel_in_water(wcte):
    """Hit time = time along the track + distance / (c/n_g) from the Cherenkov emission point."""
    jitter = 1.0
    (residual,) = _muon_cone_residuals(wcte, 50, jitter, (N_GROUP,))
    assert abs(np.median(residual)) < 0.15
    assert 0.85 * jitter < np.std(residual) < 1.2 * jitter


@pytest.mark.parametrize("kind", ["e-", "mu-", "gamma"])
def test_no_hit_earlier_than_light_allows(wcte, kind):
    """Causality: without jitter no hit comes before the earliest light from the track (Fermat)."""
    phys = PhysicsConfig(dark_rate=0.0, time_jitter=0.0, **DIRECT)
    hits, v, w = _single(wcte, kind, 600.0, 40, physics=phys)
    ev = _events(hits)
    p = wcte.pmt_positions[hits["hit_pmt"]]
    earliest = _earliest_light(p, v[ev], w[ev], np.arccos(1.0 / N_GROUP))
    # tolerance: PMT collection radius (4 cm ~ 0.2 ns) and float32
    assert np.all(hits["hit_time"] >= earliest - 0.25)


# ---------------------------------------------------------------------------------------------- gamma, pi0


def test_gammas_convert_downstream(hk, wcte):
    n = 4000
    rng = np.random.default_rng(3)
    src = light_sources(
        hk, ["gamma"] * n, np.full(n, 500.0), np.zeros((n, 3)), isotropic_directions(n, rng), rng
    )
    mean = 9.0 / 7.0 * 36.0  # 46.3 cm
    assert abs(src["start"].mean() - mean) < 0.05 * mean
    assert abs(np.mean(src["start"] > 2 * mean) - np.exp(-2.0)) < 0.02
    electrons = light_sources(
        hk, ["e-"] * 10, np.full(10, 500.0), np.zeros((10, 3)), np.eye(3)[[0] * 10], rng
    )
    assert np.all(electrons["start"] == 0)
    # Hits: gammas heading out from 30 cm before the barrel wall make light only when they convert
    # inside the tank (probability 1 - exp(-30 / 46.3) = 0.48). light_sources draws the same conversion
    # distances from the same seed as simulate_particles.
    n = 300
    v, w = np.tile([wcte.radius - 30.0, 0.0, 0.0], (n, 1)), np.tile([1.0, 0.0, 0.0], (n, 1))
    start = light_sources(wcte, ["gamma"] * n, np.full(n, 500.0), v, w, np.random.default_rng(9))["start"]
    hits = simulate_particles(wcte, ["gamma"] * n, np.full(n, 500.0), v, w, np.random.default_rng(9), NO_DARK)
    n_hits = np.diff(np.append(hits["event_hits_index"], len(hits["hit_pmt"])))
    assert np.all(n_hits[start >= 30.0] == 0)  # converted outside the tank
    # 20-30 cm before the wall the small ring can still fall between mPMTs now and then
    assert np.mean(n_hits[start < 10.0] > 0) > 0.9
    assert n_hits[start < 5.0].mean() > n_hits[(start >= 10.0) & (start < 30.0)].mean()
    assert abs(np.mean(start < 30.0) - (1.0 - np.exp(-30.0 / mean))) < 0.1


def test_pi0_decay_kinematics():
    rng = np.random.default_rng(0)
    n = 1000
    kinetic = rng.uniform(50.0, 1000.0, n)
    axis = isotropic_directions(n, rng)
    energies, dirs = pi0_decay(kinetic, axis, rng)
    assert energies.shape == (n, 2) and dirs.shape == (n, 2, 3)
    np.testing.assert_allclose(invariant_mass(energies, dirs), PI0_MASS, rtol=1e-6)
    np.testing.assert_allclose(energies.sum(1), kinetic + PI0_MASS, rtol=1e-9)
    momentum = (energies[:, :, None] * dirs).sum(1)
    p_pi = np.sqrt((kinetic + PI0_MASS) ** 2 - PI0_MASS**2)
    np.testing.assert_allclose(momentum, p_pi[:, None] * axis, atol=1e-6 * p_pi.max())
    # opening angle is at least the minimum 2 arcsin(m / E)
    cos12 = np.sum(dirs[:, 0] * dirs[:, 1], 1)
    assert np.all(np.arccos(np.clip(cos12, -1, 1)) >= 2 * np.arcsin(PI0_MASS / (kinetic + PI0_MASS)) - 1e-6)


def test_pi0_events_have_two_gamma_parents(wcte):
    hits, _, _ = _single(wcte, "pi0", 600.0, 30)
    assert set(np.unique(hits["hit_parent"])) <= {0, 1}
    assert len(np.unique(hits["hit_parent"])) == 2


# ---------------------------------------------------------------------------------------------- dark noise


def test_dark_noise_rate_matches_expectation(wcte):
    rate, window = 1.0e5, 1000.0
    phys = PhysicsConfig(dark_rate=rate, readout_window=window, quantum_efficiency=0.0)
    n = 400
    hits, _, _ = _single(wcte, "e-", 500.0, n, physics=phys)
    lam = wcte.n_pmts * rate * window * 1e-9  # 201 dark pulses per event
    expected = wcte.n_pmts * (1.0 - np.exp(-lam / wcte.n_pmts))  # distinct PMTs after merging
    per_event = len(hits["hit_pmt"]) / n
    assert abs(per_event - expected) < 4.0 * np.sqrt(expected / n) + 0.5
    assert np.all(hits["hit_parent"] == -1)
    t = hits["hit_time"]
    assert t.min() >= phys.window_start and t.max() < phys.window_start + window
    # below-threshold muon (its decay electron off): same, only dark hits
    hits, _, _ = _single(wcte, "mu-", 30.0, 50, physics=PhysicsConfig(dark_rate=rate, decay_electrons=False))
    assert len(hits["hit_pmt"]) > 0 and np.all(hits["hit_parent"] == -1)


def test_no_dark_hits_without_dark_rate(wcte):
    hits, _, _ = _single(wcte, "e-", 300.0, 30, physics=NO_DARK)
    assert len(hits["hit_pmt"]) > 0 and np.all(hits["hit_parent"] >= 0)


def test_dark_hits_merge_into_signal_hits(wcte):
    """A very high dark rate: every lit PMT also gets dark pulses, yet one hit per PMT, labelled signal."""
    phys = PhysicsConfig(dark_rate=2.0e6)
    hits, _, _ = _single(wcte, "e-", 500.0, 10, physics=phys)
    key = _events(hits) * wcte.n_pmts + hits["hit_pmt"]
    assert len(np.unique(key)) == len(key)
    assert (hits["hit_parent"] == 0).sum() > 100


# ---------------------------------------------------------------------------------------------- events


@pytest.fixture(scope="module")
def events(wcte):
    return simulate(wcte, 60, particles=("e-", "mu-", "gamma", "pi0"), seed=7, chunk_size=25, first_event=100)


def test_event_arrays_shapes_and_dtypes(wcte, events):
    n = 60
    h = len(events["hit_pmt"])
    expected = {
        "event_hits_index": ((n,), np.int64),
        "hit_pmt": ((h,), np.int32),
        "hit_charge": ((h,), np.float32),
        "hit_time": ((h,), np.float32),
        "hit_parent": ((h,), np.int32),
        "labels": ((n,), np.int32),
        "energies": ((n, 1), np.float32),
        "total_energies": ((n, 1), np.float32),
        "momenta": ((n, 1), np.float32),
        "vertex_times": ((n,), np.float32),
        "triggered": ((n,), np.int8),
        "positions": ((n, 1, 3), np.float32),
        "directions": ((n, 1, 3), np.float32),
        "angles": ((n, 2), np.float32),
        "event_ids": ((n,), np.int32),
    }
    assert set(events) == set(expected)
    for key, (shape, dtype) in expected.items():
        assert events[key].shape == shape, key
        assert events[key].dtype == dtype, key
    off = events["event_hits_index"]
    assert off[0] == 0 and np.all(np.diff(off) >= 0) and off[-1] <= h
    assert h > 0 and np.all((events["hit_pmt"] >= 0) & (events["hit_pmt"] < wcte.n_pmts))
    assert np.all(events["hit_charge"] > 0)
    np.testing.assert_array_equal(events["event_ids"], np.arange(100, 160))
    assert set(np.unique(events["labels"])) <= {0, 1, 2, 3}


def test_one_hit_per_pmt_sorted_by_pmt(events):
    off = np.append(events["event_hits_index"], len(events["hit_pmt"]))
    for i in range(len(off) - 1):
        pmts = events["hit_pmt"][off[i] : off[i + 1]]
        assert np.all(np.diff(pmts) > 0)


def test_vertices_directions_energies(wcte, events):
    d = events["directions"][:, 0]
    np.testing.assert_allclose(np.linalg.norm(d, axis=1), 1.0, atol=1e-6)
    polar, azimuth = events["angles"].T
    np.testing.assert_allclose(np.cos(polar), d[:, 1], atol=1e-5)
    np.testing.assert_allclose(azimuth, np.arctan2(d[:, 2], d[:, 0]), atol=1e-5)
    np.testing.assert_allclose(directions_to_angles(d), events["angles"], atol=1e-5)
    pos = events["positions"][:, 0]
    assert np.all(np.hypot(pos[:, 0], pos[:, 2]) <= wcte.radius - 50.0)
    assert np.all(np.abs(pos[:, 1]) <= wcte.half_height - 50.0)
    e = events["energies"][:, 0]
    assert np.all((e >= 100.0) & (e <= 1000.0))
    # Truth of issue 13: total energy and momentum from the kinetic energy and the mass.
    mass = np.array([0.0, ELECTRON_MASS, MUON_MASS, PI0_MASS])[events["labels"]]
    np.testing.assert_allclose(events["total_energies"][:, 0], e + mass, rtol=1e-6)
    np.testing.assert_allclose(events["momenta"][:, 0], np.sqrt(e * (e + 2 * mass)), rtol=1e-5)
    assert events["vertex_times"].shape == (len(e),) and np.all(events["vertex_times"] <= 0)


def test_same_seed_same_bytes_other_seed_differs(wcte, events):
    again = simulate(
        wcte, 60, particles=("e-", "mu-", "gamma", "pi0"), seed=7, chunk_size=25, first_event=100
    )
    for key in events:
        assert events[key].tobytes() == again[key].tobytes(), key
    other = simulate(
        wcte, 60, particles=("e-", "mu-", "gamma", "pi0"), seed=8, chunk_size=25, first_event=100
    )
    assert other["hit_pmt"].tobytes() != events["hit_pmt"].tobytes()


def test_chunks_reproduce_when_split_by_first_event(wcte, events):
    tail = simulate(wcte, 35, particles=("e-", "mu-", "gamma", "pi0"), seed=7, chunk_size=25, first_event=125)
    head_hits = events["event_hits_index"][25]
    for key in ("labels", "energies", "positions", "event_ids"):
        np.testing.assert_array_equal(tail[key], events[key][25:])
    np.testing.assert_array_equal(tail["hit_pmt"], events["hit_pmt"][head_hits:])


def test_workers_give_identical_output(wcte, events):
    parallel = simulate(
        wcte, 60, particles=("e-", "mu-", "gamma", "pi0"), seed=7, chunk_size=25, first_event=100, n_workers=2
    )
    for key in events:
        assert events[key].tobytes() == parallel[key].tobytes(), key


def test_labels_follow_particles(wcte):
    for name, spec in PARTICLES.items():
        out = simulate(wcte, 3, particles=(name,), seed=1)
        assert np.all(out["labels"] == spec.label)


def test_config_errors(wcte):
    with pytest.raises(ConfigError, match="accepted particles"):
        simulate(wcte, 2, particles=("proton",))
    with pytest.raises(ConfigError):
        simulate(wcte, 2, fiducial_margin=500.0)
    with pytest.raises(ConfigError):
        simulate(wcte, 2, energy_range=(500.0, 100.0))
    with pytest.raises(ConfigError):
        PhysicsConfig(refractive_index=0.9)


def test_zero_events(wcte):
    out = simulate(wcte, 0)
    assert len(out["labels"]) == 0 and len(out["hit_pmt"]) == 0 and out["event_hits_index"].shape == (0,)


# ---------------------------------------------------------------------------------------------- PMT response


@pytest.mark.parametrize("name", ["wcte", "hk"])
def test_wall_lookup_finds_every_pmt_at_its_position(name, wcte, hk):
    from recoml.families.water_cherenkov.wall import project_to_wall, wall_map

    det = {"wcte": wcte, "hk": hk}[name]
    wall = wall_map(det, PhysicsConfig().collection_radius(det))
    found = wall.lookup(project_to_wall(det), barrel=det.pmt_location == 1)
    np.testing.assert_array_equal(found, np.arange(det.n_pmts))


def test_attenuation_scales_charge_with_path_length(hk):
    """Charge with a finite attenuation length / charge without = mean exp(-d / lambda) over the light."""
    lam = 4000.0
    clear, v, w = _single(
        hk, "e-", 600.0, 10, physics=PhysicsConfig(dark_rate=0.0, attenuation_length=1e12, **DIRECT)
    )
    murky, _, _ = _single(
        hk, "e-", 600.0, 10, physics=PhysicsConfig(dark_rate=0.0, attenuation_length=lam, **DIRECT)
    )
    ev = _events(clear)
    d = np.linalg.norm(hk.pmt_positions[clear["hit_pmt"]] - v[ev], axis=1)
    expected = np.average(np.exp(-d / lam), weights=clear["hit_charge"])  # ~0.45
    ratio = murky["hit_charge"].sum() / clear["hit_charge"].sum()
    assert abs(ratio - expected) < 0.05 * expected, (ratio, expected)


def test_solid_angle_spreads_the_same_light(hk):
    """Without attenuation, a muon ring on the top cap carries the same light from 4 m or 16 m away
    (all photons reach the wall, the cap's coverage is uniform) but spreads it over ~(16/4)^2 more
    area: more PMTs hit, fewer p.e. each -- the solid angle of each PMT falls as 1/d^2."""
    phys = PhysicsConfig(dark_rate=0.0, attenuation_length=1e12, **DIRECT)
    result = {}
    for dist in (400.0, 1600.0):
        vertex = (0.0, hk.half_height - dist, 0.0)
        hits, _, _ = _single(hk, "mu-", 300.0, 20, physics=phys, vertex=vertex, direction=(0.0, 1.0, 0.0))
        result[dist] = (hits["hit_charge"].sum() / 20, len(hits["hit_pmt"]) / 20)
    (q_near, n_near), (q_far, n_far) = result[400.0], result[1600.0]
    assert abs(q_far / q_near - 1.0) < 0.1, result
    assert n_far > 2.0 * n_near, result


# ---------------------------------------------------------------------------------------------- issue 13
# Light transport, PMT response and trigger: each test fails when its effect is switched off.


def test_hit_times_travel_at_the_group_velocity(hk):
    """Photons leave at the phase-velocity Cherenkov angle but travel at c / n_g (n_g = 1.38): over HK's
    ~30 m the hit times match the group index and miss the phase index by ~ L (n_g - n) / c ~ 5 ns."""
    group, phase = _muon_cone_residuals(hk, 20, 0.0, (N_GROUP, N_WATER))
    # (the muon's 2 deg angular smear and the 25 cm PMTs shift the median by a few tenths of a ns)
    assert abs(np.median(group)) < 1.0
    assert np.median(phase) - np.median(group) > 3.0


def test_pmt_transit_time_models_match_wcsim():
    """WCSim's models at 1 p.e.: R14374 Gaussian sigma 0.6 ns; SK 20-inch sigma 0.33 + sqrt(10) = 3.49 ns;
    box-and-line: N(-0.2, 0.6314 (e^-0.0626 + 0.5711)) + Exp(mean 1 / (0.4113 + 0.07827)): mean 1.843 ns,
    sigma sqrt(0.954^2 + 2.043^2) = 2.254 ns."""
    from recoml.families.water_cherenkov.simulation import PMT_TYPES

    rng = np.random.default_rng(0)
    one = np.ones(200_000)
    t = PMT_TYPES["R14374"].time_smear(one, rng)
    assert abs(t.std() - 0.6) < 0.01 and abs(t.mean()) < 0.01
    assert abs(PMT_TYPES["R3600"].time_smear(one, rng).std() - (0.33 + np.sqrt(10.0))) < 0.03
    bl = PMT_TYPES["BoxandLine20inchHQE"].time_smear(one, rng)
    sigma = 0.6314 * (np.exp(-0.0626) + 0.5711)
    tail = 1.0 / (0.4113 + 0.07827)
    assert abs(bl.mean() - (-0.2 + tail)) < 0.02
    assert abs(bl.std() - np.hypot(sigma, tail)) < 0.02
    # More light, sharper time: 100 p.e. on a box-and-line PMT.
    assert PMT_TYPES["BoxandLine20inchHQE"].time_smear(np.full(10_000, 100.0), rng).std() < 0.8


def test_detection_efficiency_follows_the_pmt_type(hk):
    """WCSim's QE tables (WCSimPMTObject.cc: PMT20inch, and BoxandLine20inchHQE = the HQE R3600 table x
    1 / 0.73) averaged with the Frank-Tamm weight 1 / lambda^2 over 300-600 nm give the PMT types' QE;
    the same events then carry (0.276 x CE 0.95) / (0.135 x CE 1.0) = 1.94 times more photoelectrons on
    box-and-line PMTs than on SK's R3600, and (without the digitiser threshold) 1.94 x 1.0197 / 0.9993 =
    1.98 times more charge (the mean single-p.e. charges of WCSim's two tables)."""
    from recoml.families.water_cherenkov.simulation import PMT_TYPES

    wavelength = np.arange(280.0, 661.0, 20.0)
    qe_sk = [0, 0.0139, 0.0854, 0.169, 0.203, 0.206, 0.211, 0.202, 0.188, 0.167, 0.140, 0.116, 0.0806]
    qe_sk += [0.0432, 0.0265, 0.0146, 0.00756, 0.00508, 0.00158, 0]
    qe_hqe = [0, 0.0008, 0.1255, 0.254962, 0.2930, 0.3127, 0.3130, 0.2994, 0.2791, 0.2491, 0.2070]
    qe_hqe += [0.1758, 0.1384, 0.0779, 0.0473, 0.0288, 0.0149, 0.0062, 0.0002, 0.0001]
    x = np.linspace(300.0, 600.0, 3001)

    def averaged(qe: list[float]) -> float:
        return float(np.trapezoid(np.interp(x, wavelength, qe) / x**2, x) / np.trapezoid(1 / x**2, x))

    bl, sk = PMT_TYPES["BoxandLine20inchHQE"], PMT_TYPES["R3600"]
    assert bl.quantum_efficiency == pytest.approx(averaged(qe_hqe) / 0.73, abs=0.001)
    assert sk.quantum_efficiency == pytest.approx(averaged(qe_sk), abs=0.001)
    assert (bl.collection_efficiency, sk.collection_efficiency) == (0.95, 1.0)
    common = {"dark_rate": 0.0, "digitizer_threshold": False, **DIRECT}
    box_and_line, _, _ = _single(hk, "e-", 500.0, 6, physics=PhysicsConfig(**common))
    r3600, _, _ = _single(hk, "e-", 500.0, 6, physics=PhysicsConfig(pmt_type="R3600", **common))
    assert (spe_mean(bl.spe), spe_mean(sk.spe)) == pytest.approx((1.0197, 0.9993), abs=1e-4)
    expected = bl.quantum_efficiency * bl.collection_efficiency / sk.quantum_efficiency
    expected *= spe_mean(bl.spe) / spe_mean(sk.spe)
    ratio = box_and_line["hit_charge"].sum() / r3600["hit_charge"].sum()
    assert ratio == pytest.approx(expected, rel=0.05)


@pytest.mark.parametrize(("name", "rate"), [("wcte", 1000.0), ("hk", 4200.0)])
def test_default_dark_rate_follows_the_pmt_type(wcte, hk, name, rate):
    """No light: every hit is dark noise at the PMT type's rate over the 1,350 ns readout window."""
    det = {"wcte": wcte, "hk": hk}[name]
    n = 200
    hits, _, _ = _single(det, "e-", 300.0, n, physics=PhysicsConfig(quantum_efficiency=0.0))
    lam = det.n_pmts * rate * 1350e-9
    assert abs(len(hits["hit_pmt"]) / n - lam) < 4 * np.sqrt(lam / n) + 0.2
    assert PhysicsConfig().dark_rate_of(det) == rate


def test_times_are_relative_to_the_ndigits_trigger(hk):
    """t = 0 is when the 25th signal hit within 200 ns arrives (no earlier window holds 25), and the
    vertex time is stored relative to it: negative, varying with the geometry."""
    phys = PhysicsConfig(dark_rate=0.0)
    n = 20
    rng = np.random.default_rng(5)
    v = rng.uniform(-1000, 1000, (n, 3))
    w = isotropic_directions(n, rng)
    hits = simulate_particles(hk, ["e-"] * n, np.full(n, 400.0), v, w, rng, phys)
    ev = _events(hits)
    assert hits["triggered"].all()
    assert np.all(hits["vertex_times"] < 0) and np.std(hits["vertex_times"]) > 5.0
    for e in range(n):
        t = np.sort(hits["hit_time"][ev == e]).astype(np.float64)
        windows = t[24:] - t[:-24]
        first = int(np.flatnonzero(windows <= 200.0)[0])
        assert abs(t[first + 24]) < 1e-3
    # Without the trigger, the vertex is t = 0.
    hits = simulate_particles(hk, ["e-"] * n, np.full(n, 400.0), v, w, rng, NO_DARK)
    assert np.all(hits["vertex_times"] == 0) and hits["hit_time"].min() > 0


def test_rayleigh_scattering_angles_and_late_light(hk):
    """<cos^2> of the 1 + cos^2 phase function is (2/3 + 2/5) / (8/3) = 0.4, <cos> = 0; scattered photons
    arrive late: with a 20 m scattering length over 10 % of the HK charge comes > 10 ns after direct
    light, without scattering hardly any does."""
    from recoml.families.water_cherenkov.simulation import rayleigh_cosines

    mu = rayleigh_cosines(np.random.default_rng(0).random(400_000))
    assert abs(np.mean(mu**2) - 0.4) < 0.003 and abs(np.mean(mu)) < 0.005 and np.abs(mu).max() <= 1 + 1e-9

    def late_fraction(scattering_length: float) -> float:
        phys = PhysicsConfig(
            dark_rate=0.0,
            time_jitter=0.0,
            trigger=False,
            scattering_length=scattering_length,
            pmt_reflectivity=0.0,
            wall_reflectivity=0.0,
            chromatic_dispersion=False,
            decay_electrons=False,
        )
        hits, v, w = _single(hk, "mu-", 800.0, 10, physics=phys, direction=(1.0, 0.0, 0.0))
        ev = _events(hits)
        p = hk.pmt_positions[hits["hit_pmt"]]
        earliest = _earliest_light(p, v[ev], w[ev], np.arccos(1.0 / N_GROUP))
        late = hits["hit_time"] - earliest > 10.0
        return float(hits["hit_charge"][late].sum() / hits["hit_charge"].sum())

    direct = late_fraction(float("inf"))  # only the slowing muon's last metres are late
    assert direct < 0.02
    assert late_fraction(2000.0) > max(0.1, 5 * direct)


# ------------------------------------------------------------ reflection, dispersion, decay electrons


def test_reflection_directions_point_into_the_tank_with_their_laws():
    """Off a PMT uniform over the inward hemisphere (<cos> = 1/2, <cos^2> = 1/3), off the black sheet
    Lambertian (pdf 2 cos: <cos> = 2/3, <cos^2> = 1/2); barrel and cap normals."""
    from recoml.families.water_cherenkov.simulation import _tables, reflection_directions

    rng = np.random.default_rng(0)
    n = 200_000
    phi = rng.uniform(0, 2 * np.pi, n)
    barrel = rng.random(n) < 0.5
    point = (
        np.where(barrel, 10 * np.cos(phi), 3.0).astype(np.float32),
        np.where(barrel, rng.uniform(-5, 5, n), np.where(rng.random(n) < 0.5, 8.0, -8.0)).astype(np.float32),
        np.where(barrel, 10 * np.sin(phi), -2.0).astype(np.float32),
    )
    normal = np.where(
        barrel[:, None],
        -np.stack([np.cos(phi), np.zeros(n), np.sin(phi)], 1),
        np.stack([np.zeros(n), -np.sign(point[1]), np.zeros(n)], 1),
    )
    bits = rng.integers(0, 65536, 2 * n, dtype=np.uint16)
    for on_pmt, mean, mean_sq in ((True, 1 / 2, 1 / 3), (False, 2 / 3, 1 / 2)):
        d = np.stack(
            reflection_directions(point, barrel, np.full(n, on_pmt), bits, _tables(PhysicsConfig())), 1
        )
        cos = np.sum(d * normal, 1)
        assert np.allclose(np.linalg.norm(d, axis=1), 1, atol=1e-5) and cos.min() > 0
        assert abs(cos.mean() - mean) < 0.005 and abs(np.mean(cos**2) - mean_sq) < 0.005
        # the azimuth about the normal is uniform: the tangential parts average to 0
        assert np.abs((d - cos[:, None] * normal).mean(0)).max() < 0.01


def test_reflected_light_adds_late_charge(hk):
    """One bounce off PMTs (0.176, WCSim's glass dome and RGCFF surface) and the black sheet (0.055 x 2.5,
    WCSim BSRFF): a few to 25 % more charge, nearly all of it more than 10 ns after the direct light (it
    crosses the tank again)."""
    base = {
        "dark_rate": 0.0,
        "trigger": False,
        "time_jitter": 0.0,
        "scattering_length": float("inf"),
        "chromatic_dispersion": False,
    }

    def charge(**reflectivity: float) -> tuple[float, float]:
        hits, v, _ = _single(hk, "e-", 500.0, 10, physics=PhysicsConfig(**base, **reflectivity))
        ev = _events(hits)
        direct = np.linalg.norm(hk.pmt_positions[hits["hit_pmt"]] - v[ev], axis=1) * N_GROUP / C
        late = hits["hit_time"] - direct > 10.0
        return float(hits["hit_charge"].sum()), float(hits["hit_charge"][late].sum())

    q0, late0 = charge(pmt_reflectivity=0.0, wall_reflectivity=0.0)
    q1, late1 = charge()
    assert 1.03 < q1 / q0 < 1.25
    assert late1 - late0 > 0.8 * (q1 - q0)


def test_group_index_spread_over_the_detected_spectrum(hk):
    """WCSim's water index (SKDETSIM refsg.F) and the R3600 QE: n_g = n + E dn/dE is 1.381 at 400 nm (hand:
    1.34419 + 3.1 eV x (1.34515 - 1.34331) / (3.17948 - 3.02438) eV), its mean over the detected spectrum
    1.385 (the 1.38 fitted to real WCSim hit times), spread ~0.018 with the late blue tail; it widens the
    hit-time residual core of HK events."""
    from recoml.families.water_cherenkov.optics import group_index_quantiles, water_group_index
    from recoml.families.water_cherenkov.validation import ring_observables

    assert abs(water_group_index(np.array([400.0]))[0] - (1.34419 + 3.1 * 0.00184 / 0.1551)) < 0.002
    delta = group_index_quantiles()
    assert abs(delta.mean()) < 1e-3 and 0.014 < delta.std() < 0.022 and delta.max() > -1.5 * delta.min()
    width = {
        on: ring_observables(hk, "e-", 500.0, 15, physics=PhysicsConfig(chromatic_dispersion=on), seed=3)[
            "residual_core_width"
        ]
        for on in (False, True)
    }
    assert width[True] > 1.3 * width[False]


def test_shower_track_length_is_the_geant4_cascade_value(hk):
    """Raedel and Wiebusch (Astropart. Phys. 44 (2013) 102): a cascade's Cherenkov-equivalent track length
    is 532.07 cm/GeV in ice of 0.91 g/cm^3, in water x 0.91 (their density scaling): 0.4842 cm/MeV (the
    Rossi X0 / E_c = 0.45 it replaces was 7 % short). A 500 MeV electron traces 764 x QE x CE x surface x
    (1 - 1 / 1.33^2) photons per cm over 242.1 cm."""
    from recoml.families.water_cherenkov.simulation import SHOWER_CM_PER_MEV

    assert SHOWER_CM_PER_MEV == pytest.approx(0.4842, abs=1e-4)
    assert PhysicsConfig().shower_cm_per_mev == SHOWER_CM_PER_MEV
    x = np.array([[1.0, 0.0, 0.0]])
    src = light_sources(hk, ["e-"], np.array([500.0]), np.zeros((1, 3)), x, np.random.default_rng(0))
    per_cm = 764.0 * 0.276 * 0.95 * 0.8768 * (1.0 - 1.0 / 1.33**2)
    assert src["mean_photons"][0] == pytest.approx(per_cm * 242.1, rel=1e-3)


def test_water_optics_are_wcsims_tables():
    """WCSim's water (WCSimConstructMaterials.cc x the tuning defaults ABWFF 1.30, RAYFF 0.75), by hand at
    400 nm = 3.0996 eV, between the table's 3.02438 and 3.09999 eV: absorption (35567.9 + 0.9949 x (42583.0
    - 35567.9)) x 1.30 = 553 m; Rayleigh (17570.9 + 0.9949 x (15543.0 - 17570.9)) x 0.75 = 131.9 m. The
    Rayleigh length averaged over the detected spectrum (as a rate) is the toy's 100 m scattering length."""
    from recoml.families.water_cherenkov.optics import (
        absorption_quantiles,
        mean_rayleigh_length,
        water_absorption_length,
        water_rayleigh_length,
    )

    assert water_absorption_length(np.array([400.0]))[0] == pytest.approx(55311.0, rel=2e-3)
    assert water_rayleigh_length(np.array([400.0]))[0] == pytest.approx(13187.0, rel=2e-3)
    assert mean_rayleigh_length() == pytest.approx(PhysicsConfig().scattering_length, rel=0.01)
    # blue light is absorbed far less than red: most of the detected spectrum lives longer than 100 m
    inv = absorption_quantiles()
    assert np.mean(1.0 / inv > 10_000.0) > 0.7 and (1.0 / inv).min() < 3_000.0


def test_pmt_surfaces_are_wcsims_in_geant4s_sense():
    """WCSim's glass-photocathode surface has REFLECTIVITY 0.32, which Geant4 (WCSimOpBoundaryProcess)
    reads as: absorbed and handed to the QE with probability 0.68, else a Fresnel boundary from glass into
    n = 1 (total internal reflection beyond 48.1 deg in water: sin^2 > (1 / 1.34419)^2 = 0.5535, 44.7 % of a
    beam on a sphere). By hand: normal-incidence water-glass reflectance ((1.5309 - 1.34419) / (1.5309 +
    1.34419))^2 = 0.42 %; the reflectivity is at least 0.32 x 0.447 x (1 - r_out)^2 = 0.134 and the TIR
    share plus Fresnel make it 0.176 (not the 0.32 read as a reflectivity before); the detection is (1 -
    <r_out> = 0.968) x 0.68 / 0.75 = 0.877. Box-and-line and R3600 carry it, the toy's 3-inch values not."""
    from recoml.families.water_cherenkov.optics import fresnel_reflectance, wcsim_pmt_surface
    from recoml.families.water_cherenkov.simulation import PMT_TYPES

    assert fresnel_reflectance(1.34419, 1.5309, np.array([1.0]))[0] == pytest.approx(0.0042172, rel=1e-4)
    assert fresnel_reflectance(1.5309, 1.0, np.array([np.cos(np.radians(41.0))]))[0] == 1.0
    surface = wcsim_pmt_surface()
    assert 0.134 < surface.reflectivity == pytest.approx(0.176, abs=0.002)
    assert surface.detection == pytest.approx(0.968 * 0.68 / 0.75, abs=0.002)
    assert PhysicsConfig().pmt_reflectivity == surface.reflectivity
    assert PMT_TYPES["BoxandLine20inchHQE"].surface_detection == surface.detection
    assert PMT_TYPES["R3600"].surface_detection == surface.detection
    assert PMT_TYPES["R14374"].surface_detection == 1.0


def test_absorption_depends_on_each_photons_wavelength(hk):
    """Charge with WCSim's absorption / charge without = the mean over the light of the spectrum-averaged
    survival <exp(-d / L(lambda))> at each hit's distance d (0.88 at HK's ~30 m, where a single 80 m
    length would give 0.69 and the spectrum-averaged rate 1 / <1 / L> = 194 m would give 0.86)."""
    from recoml.families.water_cherenkov.optics import absorption_quantiles

    clear, v, w = _single(
        hk, "e-", 600.0, 10, physics=PhysicsConfig(dark_rate=0.0, attenuation_length=1e12, **DIRECT)
    )
    water, _, _ = _single(hk, "e-", 600.0, 10, physics=PhysicsConfig(dark_rate=0.0, **DIRECT))
    ev = _events(clear)
    d = np.linalg.norm(hk.pmt_positions[clear["hit_pmt"]] - v[ev], axis=1)
    survival = np.exp(-d[:, None] * absorption_quantiles()[None, :].astype(np.float64)).mean(axis=1)
    expected = np.average(survival, weights=clear["hit_charge"])
    ratio = water["hit_charge"].sum() / clear["hit_charge"].sum()
    assert abs(ratio - expected) < 0.02, (ratio, expected)
    single = np.average(np.exp(-d / 8000.0), weights=clear["hit_charge"])
    assert ratio > single + 0.1


def test_knock_on_electrons_follow_the_pdg_spectrum():
    """PDG "Passage of particles through matter", knock-on electrons. A 500 MeV (kinetic) muon, p = 596.4
    MeV, beta gamma = 5.645, gamma = 5.732: W_max = 2 x 0.511 x 5.645^2 / (1 + 2 x 5.732 x 0.511 / 105.66) =
    30.85 MeV by hand. The knock-on light per cm, integrated over T in the other order, is a single integral
    of the electron's Cherenkov weight w(T') / (dE/dx) times int_T'^W (1 - beta^2 T / W) / T^2 dT = 1/T' -
    1/W - (beta^2 / W) ln(W / T'): scipy's quad of that equals the table's double integral; it is ~10 % of
    the muon's own light per cm at the vertex (sin^2 theta = 0.417 of a beta = 1 track's 0.435)."""
    from scipy.integrate import quad

    from recoml.families.water_cherenkov.delta_rays import (
        ELECTRON_DEDX,
        K_ZA_WATER,
        knock_on_track_per_cm,
        max_energy_transfer,
    )

    p = 596.4
    assert max_energy_transfer(np.array([p]))[0] == pytest.approx(30.85, abs=0.05)
    n = 1.33
    t_th = ELECTRON_MASS * (1 / np.sqrt(1 - 1 / n**2) - 1)
    assert t_th == pytest.approx(0.264, abs=0.001)
    w_max = float(max_energy_transfer(np.array([p]))[0])
    beta2 = p**2 / (p**2 + MUON_MASS**2)

    def integrand(t: float) -> float:
        beta_e2 = 1 - (ELECTRON_MASS / (t + ELECTRON_MASS)) ** 2
        weight = max(1 - 1 / (n * n * beta_e2), 0.0) / (1 - 1 / n**2)
        outer = 1 / t - 1 / w_max - beta2 / w_max * np.log(w_max / t)
        return weight / ELECTRON_DEDX * outer

    expected = 0.5 * K_ZA_WATER / beta2 * quad(integrand, t_th, w_max, limit=200)[0]
    per_cm = knock_on_track_per_cm(np.array([p]), n)[0]
    assert per_cm == pytest.approx(expected, rel=0.01)
    muon_sin2 = 1 - ((500 + MUON_MASS) / (n * p)) ** 2
    assert 0.08 < per_cm * (1 - 1 / n**2) / muon_sin2 < 0.12


def test_knock_on_light_is_added_to_muons_and_lands_wide(hk):
    """With knock-on electrons a 500 MeV muon's direct light grows by their share (7-10 % over the track:
    it falls with the muon's momentum), and that light is broad: the electrons leave at cos = (T / p)(p_max
    / W_max), ~45 deg for 1 MeV, and scatter, so a third or more of it lands beyond 50 deg from the muon,
    where the muon's own cone (40.3 deg) puts nothing."""
    from recoml.families.water_cherenkov.delta_rays import knock_on_light_cosines

    angles = np.degrees(np.arccos(knock_on_light_cosines(30.85, 1.33)))
    assert 40.0 < np.median(angles) < 65.0 and 0.35 < np.mean(angles > 50.0) < 0.7

    def light(on: bool) -> tuple[float, float]:
        phys = PhysicsConfig(dark_rate=0.0, **{**DIRECT, "muon_delta_rays": on})
        hits, v, w = _single(hk, "mu-", 500.0, 20, physics=phys)
        ev = _events(hits)
        rel = hk.pmt_positions[hits["hit_pmt"]] - v[ev]
        ang = np.degrees(np.arccos(np.sum(rel * w[ev], 1) / np.linalg.norm(rel, axis=1)))
        q = hits["hit_charge"]
        return float(q.sum()), float(q[ang > 50.0].sum())

    (q_off, wide_off), (q_on, wide_on) = light(False), light(True)
    assert 1.04 < q_on / q_off < 1.13
    assert wide_off < 0.005 * q_off
    assert wide_on - wide_off > 0.3 * (q_on - q_off)


def test_michel_spectrum_mean_and_endpoint():
    """dN/dx ~ x^2 (3 - 2x): pdf 6x^2 - 4x^3, mean x = 6/4 - 4/5 = 0.7 (36.98 MeV of 52.83), P(x > 1/2) =
    1 - (2/8 - 1/16) = 0.8125 (hand-computed)."""
    from recoml.families.water_cherenkov.simulation import MICHEL_ENDPOINT, michel_energies

    e = michel_energies(np.random.default_rng(0).random(400_000))
    assert abs(e.mean() - 0.7 * MICHEL_ENDPOINT) < 0.1 and 0 <= e.min() and e.max() <= MICHEL_ENDPOINT
    assert abs(np.mean(e > MICHEL_ENDPOINT / 2) - 0.8125) < 0.004


def test_stopping_muons_decay_into_michel_electrons(hk, wcte):
    """A 100 MeV muon stops after T / (dE/dx) = 50 cm and its electron starts there after the muon's travel
    time p0 / (c dE/dx) (176.4 MeV / (29.98 cm/ns x 2 MeV/cm) = 2.94 ns) plus Exp(tau): mu+ all decay, tau =
    2,197 ns; mu- lose 18.4 % to capture, tau = 1,795 ns. A 1 GeV muon leaves WCTE: no electron."""
    n = 6000
    x = np.tile([1.0, 0.0, 0.0], (n, 1))
    for kind, fraction, tau in (("mu+", 1.0, 2197.0), ("mu-", 0.816, 1795.0)):
        src = light_sources(hk, [kind] * n, np.full(n, 100.0), np.zeros((n, 3)), x, np.random.default_rng(1))
        electron = src["delay"] > 0
        assert abs(electron.sum() / n - fraction) < 4 * np.sqrt(fraction * (1 - fraction) / n) + 1e-9
        assert np.all(src["kind"][electron] == PARTICLES["e-"].kind)
        assert np.allclose(src["vertex"][electron], [50.0, 0.0, 0.0], atol=1e-6)
        decay = src["delay"][electron] - 176.43 / (C * 2.0)
        assert abs(decay.mean() - tau) < 4 * tau / np.sqrt(electron.sum()) and decay.min() >= 0
        # its light belongs to its muon
        assert np.all(src["parent"][electron] == 0)
    src = light_sources(
        wcte, ["mu-"] * 50, np.full(50, 1000.0), np.zeros((50, 3)), x[:50], np.random.default_rng(1)
    )
    assert not np.any(src["delay"] > 0)


def test_decay_electrons_add_late_hits_to_muon_events(hk):
    from recoml.families.water_cherenkov.validation import ring_observables

    late = {
        on: ring_observables(hk, "mu-", 500.0, 60, physics=PhysicsConfig(decay_electrons=on), seed=2)[
            "late_hit_fraction"
        ]
        for on in (False, True)
    }
    assert late[True] > late[False] + 0.01


def test_light_emitted_beyond_the_wall_is_never_traced(wcte):
    """Samples emitted past the wall (a shower's tail outside the tank) are dropped before tracing: a shower
    that starts 10 cm beyond the wall gives no photoelectron however many photons it has, one that starts
    10 cm before it does (its first 10 cm are inside)."""
    from recoml.families.water_cherenkov.simulation import _make_sources, _tables, _trace_block
    from recoml.families.water_cherenkov.wall import wall_map

    phys = NO_DARK
    wall = wall_map(wcte, phys.collection_radius(wcte))
    for offset, seen in ((10.0, False), (-10.0, True)):
        rng = np.random.default_rng(4)
        src = _make_sources(
            wcte, ["e-"], np.array([500.0]), np.zeros((1, 3)), np.array([[1.0, 0, 0]]), rng, phys, None
        )
        src.start[:] = src.t_exit + offset
        pid, pmt, t = _trace_block(src, slice(0, 1), np.array([20_000]), wall, _tables(phys), phys, rng)
        assert (len(pid) > 0) == seen, offset
