"""Optical data of water and PMTs that the toy simulation draws per photon (docs/physics.md).

Why per photon: light in water is dispersive. The group index ``n_g = n + E dn/dE`` ranges from 1.36 (red)
to 1.42 (near UV) over the spectrum a PMT detects, so over the 20-40 m paths of Hyper-K the arrival
times of photons from one point spread by several ns: part of the width of the real hit-time residual.

Sources of the numbers (physical data tables, not code):

* refractive index of pure water against photon energy: WCSim ``WCSimConstructMaterials.cc`` (``RINDEX1``,
  from SKDETSIM's ``refsg.F``), 2.07-4.43 eV (280-600 nm);
* the detected spectrum: the Frank-Tamm ``1 / lambda^2`` photon spectrum times the quantum efficiency of
  the 20-inch R3600 PMT, WCSim ``WCSimPMTObject.cc`` (``PMT20inch::GetQE``, 280-660 nm in 20 nm steps);
  the high-QE box-and-line PMT has the same shape (WCSim scales it).
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["group_index_quantiles", "water_group_index"]

#: Photon energy (eV) and refractive index of water (WCSim RINDEX1 / SKDETSIM refsg.F), 280-600 nm.
_ENERGY_EV = np.array(
    [2.06666, 2.10169, 2.13793, 2.17543, 2.21428, 2.25454, 2.29629, 2.33962, 2.38461, 2.43137,
     2.47999, 2.53061, 2.58333, 2.63829, 2.69565, 2.75555, 2.81817, 2.88371, 2.95237, 3.02438,
     3.09999, 3.17948, 3.26315, 3.35134, 3.44444, 3.54285, 3.64705, 3.75757, 3.87499, 3.99999,
     4.13332, 4.27585, 4.42856]
)  # fmt: skip
_INDEX = np.array(
    [1.33361, 1.33393, 1.33427, 1.33462, 1.33498, 1.33536, 1.33576, 1.33617, 1.3366, 1.33705,
     1.33753, 1.33803, 1.33855, 1.33911, 1.3397, 1.34033, 1.341, 1.34172, 1.34248, 1.34331,
     1.34419, 1.34515, 1.3462, 1.34733, 1.34858, 1.34994, 1.35145, 1.35312, 1.35498, 1.35707,
     1.35943, 1.36211, 1.36518]
)  # fmt: skip
#: R3600 quantum efficiency at 280, 300, ..., 660 nm (WCSim PMT20inch::GetQE).
_QE_NM = np.arange(280.0, 661.0, 20.0)
_QE = np.array(
    [0.0, 0.0139, 0.0854, 0.169, 0.203, 0.206, 0.211, 0.202, 0.188, 0.167, 0.140, 0.116, 0.0806,
     0.0432, 0.0265, 0.0146, 0.00756, 0.00508, 0.00158, 0.0]
)  # fmt: skip
_HC_EV_NM = 1239.84198  # h c in eV nm


def water_group_index(wavelength_nm: np.ndarray) -> np.ndarray:
    """Group index ``n + E dn/dE`` of water at ``wavelength_nm`` (280-600 nm)."""
    energy = _HC_EV_NM / np.asarray(wavelength_nm, dtype=np.float64)
    group = _INDEX + _ENERGY_EV * np.gradient(_INDEX, _ENERGY_EV)
    return np.interp(energy, _ENERGY_EV, group)


@functools.lru_cache(maxsize=1)
def group_index_quantiles(bins: int = 1024) -> np.ndarray:
    """``bins`` equal-probability quantiles of the group index over the detected spectrum, minus its mean
    (so the simulation keeps its configured mean ``group_index`` and adds only the spread)."""
    wavelength = np.linspace(282.0, 598.0, 4000)
    weight = np.interp(wavelength, _QE_NM, _QE) / wavelength**2
    cdf = np.cumsum(weight) / weight.sum()
    group = water_group_index(wavelength)
    p = (np.arange(bins) + 0.5) / bins
    quantiles = group[np.minimum(np.searchsorted(cdf, p), len(group) - 1)]
    return (quantiles - np.sum(weight * group) / weight.sum()).astype(np.float32)
