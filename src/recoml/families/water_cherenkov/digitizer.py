"""WCSim's PMT charge response and digitiser threshold (its default SKI digitiser), as the toy applies them.

Why: the charge a PMT records for one photoelectron is broad (the 20-inch SK PMT's single-p.e. spectrum has
a relative width of 1.03, a quarter of it below 0.25 p.e.), and the digitiser keeps a low-charge hit only
with some probability, so a real event loses about a tenth of its single-p.e. hits (most of its late and
dark-noise hits) and its dark rate is quoted after that loss. Sources (github.com/WCSim/WCSim, commit
8cc7f87a, MIT):

* single-p.e. charge: ``WCSimPMTObject.cc`` ``Getqpe`` tables (cumulative, 500 bins of 1 / 22.83 p.e.
  starting at -50 / 22.83) drawn by ``WCSimWCPMT::rn1pe``; a hit's charge is the sum over its
  photoelectrons (``data/wcsim_spe.csv``);
* threshold: ``WCSimWCDigitizerSKI::Threshold`` (``WCSimWCDigitizer.hh``): a hit of charge q is kept with
  probability ``min(1, poly(q + 0.1))`` below q = 1 p.e. (a degree-10 polynomial from SKDETSIM), and a
  kept hit's charge gets a Gaussian error of 0.03 p.e.; then WCSim scales it by 0.985
  (``WCSimWCDigitizer.cc``);
* dark noise: WCSim draws dark photoelectrons at the PMT's dark rate times its conversion factor
  (``GetDarkRateConversionFactor``: 1.367 for the SK 20-inch PMT, 1.110 for the box-and-line and 3-inch
  PMTs), which is 1 / (the fraction of single-p.e. hits the threshold keeps), so the rate after the
  threshold is the quoted dark rate.
"""

from __future__ import annotations

import functools
import io
from importlib import resources

import numpy as np

__all__ = [
    "CHARGE_SCALE",
    "THRESHOLD_CHARGE_ERROR",
    "SPE_TYPES",
    "spe_charge_quantiles",
    "spe_mean",
    "threshold_acceptance",
]

#: WCSim's global scale of a digitised charge (``efficiency`` in WCSimWCDigitizerSKI::DigitizeHits).
CHARGE_SCALE = 0.985
#: Gaussian error (p.e.) added to the charge of a hit that passes the threshold.
THRESHOLD_CHARGE_ERROR = 0.03
#: Single-p.e. tables in data/wcsim_spe.csv (WCSim PMT class names).
SPE_TYPES = ("PMT20inch", "BoxandLine20inchHQE", "PMT3inchR14374")
_BIN = 1.0 / 22.83  # p.e. per bin
_FIRST = -50  # index of the bin starting at 0 p.e.

# WCSimWCDigitizerSKI::Threshold: acceptance polynomial in x = q + 0.1, highest power first.
_THRESHOLD_POLY = (2.370, 51.34, -452.2, 1472.0, -2529.0, 2513.0, -1449.0, 452.0, -63.23, 3.748, -0.06374)


@functools.lru_cache(maxsize=1)
def _spe_cdfs() -> dict[str, np.ndarray]:
    text = resources.files("recoml.families.water_cherenkov").joinpath("data/wcsim_spe.csv").read_text()
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    columns = lines[0].split(",")
    table = np.loadtxt(io.StringIO("\n".join(lines[1:])), delimiter=",", ndmin=2)
    return {name: table[:, columns.index(name)] for name in SPE_TYPES}


@functools.lru_cache(maxsize=8)
def spe_charge_quantiles(spe: str, bins: int = 65536) -> np.ndarray:
    """Charges (p.e.) at the equal-probability quantiles ``(k + 0.5) / bins`` of WCSim's single-p.e.
    distribution ``spe``: the inverse of its piecewise-uniform CDF (what rn1pe draws), as float32."""
    cdf = _spe_cdfs()[spe]
    p = (np.arange(bins) + 0.5) / bins
    i = np.searchsorted(cdf, p, side="left")
    below = np.where(i > 0, cdf[np.maximum(i - 1, 0)], 0.0)
    width = cdf[i] - below
    frac = np.where(width > 0, (p - below) / np.where(width > 0, width, 1.0), 0.5)
    return ((i + _FIRST + frac) * _BIN).astype(np.float32)


def spe_mean(spe: str) -> float:
    """Mean single-p.e. charge (p.e.) of the table ``spe``."""
    cdf = _spe_cdfs()[spe]
    pdf = np.diff(np.concatenate([[0.0], cdf]))
    centres = (np.arange(len(cdf)) + _FIRST + 0.5) * _BIN
    return float(np.sum(pdf * centres))


def threshold_acceptance(charge: np.ndarray) -> np.ndarray:
    """Probability that WCSim's SKI digitiser keeps a hit of ``charge`` p.e. (1 from 1 p.e. on)."""
    x = np.asarray(charge, dtype=np.float64) + 0.1
    poly = np.polyval(_THRESHOLD_POLY, np.minimum(x, 1.1))
    return np.where(x < 1.1, np.clip(poly, 0.0, 1.0), 1.0)
