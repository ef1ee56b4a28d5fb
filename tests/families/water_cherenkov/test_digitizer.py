"""WCSim's single-p.e. charges and SKI digitiser threshold (digitizer.py), by hand and in simulated events."""

from __future__ import annotations

import numpy as np
import pytest
from omegaconf import OmegaConf

from recoml.conf import CONF_DIR
from recoml.families.water_cherenkov import build_cylinder
from recoml.families.water_cherenkov.digitizer import (
    SPE_TYPES,
    spe_charge_quantiles,
    spe_mean,
    threshold_acceptance,
)
from recoml.families.water_cherenkov.simulation import PMT_TYPES, PhysicsConfig, simulate_particles


def test_threshold_is_wcsims_polynomial():
    """WCSimWCDigitizerSKI::Threshold by hand: x = q + 0.1, p = -0.06374 + 3.748 x - 63.23 x^2 + 452.0 x^3
    - 1449.0 x^4 + 2513.0 x^5 - 2529 x^6 + 1472 x^7 - 452.2 x^8 + 51.34 x^9 + 2.370 x^10 below x = 1.1,
    capped at 1; 1 from q = 1 p.e. on."""
    coefficients = [-0.06374, 3.748, -63.23, 452.0, -1449.0, 2513.0, -2529.0, 1472.0, -452.2, 51.34, 2.370]

    def by_hand(q: float) -> float:
        x = q + 0.1
        return min(1.0, sum(c * x**k for k, c in enumerate(coefficients)))

    for q in (0.05, 0.2, 0.3, 0.5, 0.8, 0.95):
        assert threshold_acceptance(np.array([q]))[0] == pytest.approx(by_hand(q), abs=1e-9)
    assert threshold_acceptance(np.array([0.2]))[0] == pytest.approx(0.3933, abs=1e-3)
    assert np.all(threshold_acceptance(np.array([1.0, 1.5, 40.0])) == 1.0)
    q = np.linspace(-1.0, 5.0, 6001)
    assert np.all((threshold_acceptance(q) >= 0) & (threshold_acceptance(q) <= 1))


@pytest.mark.parametrize(
    ("spe", "conversion"), [("PMT20inch", 1.367), ("BoxandLine20inchHQE", 1.110), ("PMT3inchR14374", 1.110)]
)
def test_wcsims_dark_rate_conversion_is_the_inverse_of_the_single_pe_acceptance(spe, conversion):
    """WCSim raises the quoted dark rate by GetDarkRateConversionFactor before its threshold; that factor is
    1 / (the fraction of single-p.e. hits the threshold keeps), computed here from the tables alone."""
    accepted = threshold_acceptance(spe_charge_quantiles(spe)).mean()
    assert 1.0 / accepted == pytest.approx(conversion, rel=0.015)
    assert any(t.spe == spe and t.dark_conversion == conversion for t in PMT_TYPES.values())


def test_single_pe_quantiles_reproduce_the_tables():
    """The quantile draws have the tables' mean (WCSim's 20-inch SK spectrum 0.9993 p.e., box-and-line and
    3-inch 1.0197), and the SK spectrum is the broad one: a quarter of it below 0.25 p.e., against 6.5 %."""
    for spe in SPE_TYPES:
        assert spe_charge_quantiles(spe).mean() == pytest.approx(spe_mean(spe), abs=2e-4)
    assert spe_mean("PMT20inch") == pytest.approx(0.9993, abs=1e-4)
    assert spe_mean("BoxandLine20inchHQE") == pytest.approx(1.0197, abs=1e-4)
    # The table's own CDF at 0.25 p.e. (bin i covers [(i - 50) / 22.83, (i - 49) / 22.83)), read with numpy.
    text = (CONF_DIR.parent / "families/water_cherenkov/data/wcsim_spe.csv").read_text()
    rows = np.loadtxt([line for line in text.splitlines()[4:]], delimiter=",")
    edges = (np.arange(501) - 50) / 22.83
    for column, spe, expected in ((1, "PMT20inch", 0.25), (2, "BoxandLine20inchHQE", 0.065)):
        cdf_at = np.interp(0.25, edges, np.concatenate([[0.0], rows[:, column]]))
        assert np.mean(spe_charge_quantiles(spe) < 0.25) == pytest.approx(cdf_at, abs=1e-3)
        assert cdf_at == pytest.approx(expected, abs=0.01)


@pytest.fixture(scope="module")
def hk():
    cfg = OmegaConf.to_container(OmegaConf.load(CONF_DIR / "detector" / "hk.yaml"))
    cfg.pop("_target_")
    return build_cylinder(**cfg)


def _dark_only(detector, physics: PhysicsConfig, n: int = 100) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    w = np.tile([1.0, 0.0, 0.0], (n, 1))
    return simulate_particles(detector, ["e-"] * n, np.full(n, 300.0), np.zeros((n, 3)), w, rng, physics)


def test_the_threshold_removes_low_charge_dark_hits_and_keeps_the_quoted_rate(hk):
    """No light: WCSim draws dark photoelectrons at 4.2 kHz x 1.110 and its threshold keeps 90 %, so the
    hits come at the quoted 4.2 kHz with none below ~0.1 p.e.; without the threshold the dark
    photoelectrons are drawn at 4.2 kHz and all kept, low charges included."""
    expected = hk.n_pmts * 4200.0 * 1350e-9
    on = _dark_only(hk, PhysicsConfig(quantum_efficiency=0.0))
    off = _dark_only(hk, PhysicsConfig(quantum_efficiency=0.0, digitizer_threshold=False))
    for hits in (on, off):
        assert len(hits["hit_charge"]) / 100 == pytest.approx(expected, rel=0.03)
    low = (np.mean(on["hit_charge"] < 0.2), np.mean(off["hit_charge"] < 0.2))
    assert low[0] < 0.5 * low[1], low
    assert np.all(on["hit_charge"] > 0)


def test_the_threshold_removes_a_tenth_of_single_pe_signal_hits(hk):
    """The same events with and without the threshold: signal hits fall by 5-10 % (single-p.e. hits lose
    9.8 %, multi-p.e. ones nearly nothing) while the charge moves by little (0.985 x the kept charges)."""
    rng_seed = 11
    n = 12
    w = np.random.default_rng(1).normal(size=(n, 3))
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    counts = {}
    for threshold in (True, False):
        phys = PhysicsConfig(dark_rate=0.0, digitizer_threshold=threshold)
        rng = np.random.default_rng(rng_seed)
        hits = simulate_particles(hk, ["e-"] * n, np.full(n, 500.0), np.zeros((n, 3)), w, rng, phys)
        counts[threshold] = (len(hits["hit_charge"]), float(hits["hit_charge"].sum()))
    hits_ratio = counts[True][0] / counts[False][0]
    charge_ratio = counts[True][1] / counts[False][1]
    assert 0.90 < hits_ratio < 0.95, counts
    assert 0.95 < charge_ratio < 1.0, counts
