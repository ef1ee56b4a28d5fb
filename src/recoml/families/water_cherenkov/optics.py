"""Optical data of water and PMTs that the toy simulation draws per photon (docs/physics.md).

Why per photon: light in water is dispersive and its absorption depends steeply on the wavelength. The
group index ``n_g = n + E dn/dE`` ranges from 1.36 (red) to 1.42 (near UV) over the spectrum a PMT
detects, so over the 20-40 m paths of Hyper-K the arrival times of photons from one point spread by
several ns (part of the width of the real hit-time residual); the absorption length runs from ~20 m
(550 nm) to several hundred metres (350-450 nm), so no single length describes both a 3 m tank and a
30 m path. Each traced photon draws one wavelength bin of the detected spectrum and takes its group index
and absorption length from it.

Sources of the numbers (physical data tables, not code):

* refractive index of pure water against photon energy: WCSim ``WCSimConstructMaterials.cc`` (``RINDEX1``,
  from SKDETSIM's ``refsg.F``), 2.07-4.43 eV (280-600 nm);
* the detected spectrum: the Frank-Tamm ``1 / lambda^2`` photon spectrum times the quantum efficiency of
  the 20-inch R3600 PMT, WCSim ``WCSimPMTObject.cc`` (``PMT20inch::GetQE``, 280-660 nm in 20 nm steps);
  the high-QE box-and-line PMT has the same shape (WCSim scales it);
* absorption and Rayleigh scattering lengths of pure water: WCSim ``WCSimConstructMaterials.cc``
  (``ABSORPTION_water`` and ``RAYLEIGH_water``, "values from SKDETSIM"), times WCSim's tuning defaults
  ``ABWFF`` = 1.30 and ``RAYFF`` = 0.75 (``WCSimTuningParameters.cc``); WCSim's Mie scattering is off
  (``MIEFF`` = 0);
* the 20-inch PMT's surfaces: WCSim's glass (``RINDEX_glass``, a BK7 formula: 1.531 at 400 nm) and its
  glass-photocathode surface (``WCSimConstructMaterials.cc``: dielectric_dielectric, polished,
  ``REFLECTIVITY`` = ``RGCFF`` = 0.32, the photocathode side n = 1), whose reflectivity Geant4's boundary
  process (``WCSimOpBoundaryProcess.cc``) uses as: with probability 1 - 0.32 the photon is absorbed and
  handed to the sensitive detector, else the ordinary Fresnel boundary decides (total internal reflection
  beyond the critical angle). The sensitive detector then applies the QE times 1 / (1 - 0.25)
  (``WCSimWCSD.cc``, WCSim's default ``PMT_QE_Method`` 3, "translated from skdetsim").
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass
from importlib import resources

import numpy as np

__all__ = [
    "PMTSurface",
    "absorption_quantiles",
    "detected_wavelength_quantiles",
    "group_index_quantiles",
    "mean_rayleigh_length",
    "water_absorption_length",
    "water_group_index",
    "water_rayleigh_length",
]

#: WCSim's water optics grid (ENERGY_water, eV, 200-790 nm) with ABSORPTION_water and RAYLEIGH_water (cm)
#: before the tuning factors ABWFF (absorption) and RAYFF (Rayleigh) multiply them (data/wcsim_water.csv).
_WATER_TABLE = resources.files("recoml.families.water_cherenkov").joinpath("data/wcsim_water.csv").read_text()
_WATER_EV, _ABSORPTION_CM, _RAYLEIGH_CM = np.loadtxt(
    io.StringIO(_WATER_TABLE), delimiter=",", skiprows=4, unpack=True
)
#: Photon energy (eV; the grid's 2.07-4.43 eV, 280-600 nm) and refractive index of water (WCSim RINDEX1 /
#: SKDETSIM refsg.F).
_ENERGY_EV = _WATER_EV[19:52]
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
ABWFF = 1.30  # WCSim's default absorption scale factor
RAYFF = 0.75  # WCSim's default Rayleigh scale factor


def water_group_index(wavelength_nm: np.ndarray) -> np.ndarray:
    """Group index ``n + E dn/dE`` of water at ``wavelength_nm`` (280-600 nm)."""
    energy = _HC_EV_NM / np.asarray(wavelength_nm, dtype=np.float64)
    group = _INDEX + _ENERGY_EV * np.gradient(_INDEX, _ENERGY_EV)
    return np.interp(energy, _ENERGY_EV, group)


def water_absorption_length(wavelength_nm: np.ndarray) -> np.ndarray:
    """Absorption length (cm) of WCSim's water at ``wavelength_nm``: ABSORPTION_water x ABWFF."""
    energy = _HC_EV_NM / np.asarray(wavelength_nm, dtype=np.float64)
    return ABWFF * np.interp(energy, _WATER_EV, _ABSORPTION_CM)


def water_rayleigh_length(wavelength_nm: np.ndarray) -> np.ndarray:
    """Rayleigh scattering length (cm) of WCSim's water at ``wavelength_nm``: RAYLEIGH_water x RAYFF."""
    energy = _HC_EV_NM / np.asarray(wavelength_nm, dtype=np.float64)
    return RAYFF * np.interp(energy, _WATER_EV, _RAYLEIGH_CM)


def _detected_spectrum() -> tuple[np.ndarray, np.ndarray]:
    """Wavelengths (nm, 282-598) and the normalised weight of the detected spectrum: Frank-Tamm 1 / lambda^2
    times the R3600 QE."""
    wavelength = np.linspace(282.0, 598.0, 4000)
    weight = np.interp(wavelength, _QE_NM, _QE) / wavelength**2
    return wavelength, weight / weight.sum()


@functools.lru_cache(maxsize=4)
def detected_wavelength_quantiles(bins: int = 1024) -> np.ndarray:
    """``bins`` equal-probability quantiles (nm) of the detected spectrum: a photon's wavelength is the
    quantile a uniform random bin index picks."""
    wavelength, weight = _detected_spectrum()
    p = (np.arange(bins) + 0.5) / bins
    return wavelength[np.minimum(np.searchsorted(np.cumsum(weight), p), len(wavelength) - 1)]


@functools.lru_cache(maxsize=4)
def group_index_quantiles(bins: int = 1024) -> np.ndarray:
    """The group index at the ``bins`` wavelength quantiles of the detected spectrum, minus its mean over the
    spectrum (so the simulation keeps its configured mean ``group_index`` and adds only the spread)."""
    wavelength, weight = _detected_spectrum()
    mean = np.sum(weight * water_group_index(wavelength))
    return (water_group_index(detected_wavelength_quantiles(bins)) - mean).astype(np.float32)


@functools.lru_cache(maxsize=4)
def absorption_quantiles(bins: int = 1024) -> np.ndarray:
    """1 / absorption length (1/cm) at the ``bins`` wavelength quantiles of the detected spectrum (the same
    bins as :func:`group_index_quantiles`: one draw gives a photon both)."""
    return (1.0 / water_absorption_length(detected_wavelength_quantiles(bins))).astype(np.float32)


def mean_rayleigh_length() -> float:
    """WCSim's Rayleigh scattering length averaged over the detected spectrum as a rate, 1 / <1 / L> (cm):
    the length whose exponential gives the same fraction of scattered photons over short paths."""
    wavelength, weight = _detected_spectrum()
    return float(1.0 / np.sum(weight / water_rayleigh_length(wavelength)))


#: WCSim's glass-photocathode surface reflectivity (RGCFF), its QE scale at the sensitive detector
#: (1 / (1 - 0.25)), and the indices of water and PMT glass at 400 nm (RINDEX1, RINDEX_glass).
RGCFF = 0.32
QE_RATIO = 1.0 / (1.0 - 0.25)
N_WATER_400 = 1.34419
N_GLASS_400 = 1.5309


def fresnel_reflectance(n1: float, n2: float, cos_incidence: np.ndarray) -> np.ndarray:
    """Unpolarised Fresnel reflectance from index ``n1`` into ``n2`` (1 beyond the critical angle)."""
    cos1 = np.asarray(cos_incidence, dtype=np.float64)
    sin2 = n1 / n2 * np.sqrt(np.maximum(1.0 - cos1**2, 0.0))
    cos2 = np.sqrt(np.maximum(1.0 - sin2**2, 0.0))
    rs = ((n1 * cos1 - n2 * cos2) / (n1 * cos1 + n2 * cos2)) ** 2
    rp = ((n1 * cos2 - n2 * cos1) / (n1 * cos2 + n2 * cos1)) ** 2
    return np.where(sin2 >= 1.0, 1.0, 0.5 * (rs + rp))


@dataclass(frozen=True)
class PMTSurface:
    """What WCSim's 20-inch PMT surfaces do to a photon that reaches the PMT, averaged over where it meets
    the glass dome: ``reflectivity`` back into the water, ``detection`` the probability that it is handed
    to the photocathode's QE (times WCSim's QE scale 1 / (1 - 0.25), so a photon is detected with
    ``detection`` x QE x CE)."""

    reflectivity: float
    detection: float


@functools.lru_cache(maxsize=1)
def wcsim_pmt_surface(samples: int = 100_000) -> PMTSurface:
    """:class:`PMTSurface` of WCSim's glass dome. A beam meets a sphere with sin^2 of the incidence angle
    uniform in [0, 1]; at each angle the water-glass Fresnel reflectance ``r_out`` (both plain dielectrics),
    then the glass-photocathode surface: absorbed (to the sensitive detector) with probability 1 - RGCFF,
    else the Fresnel boundary from glass into n = 1, ``r_in`` (total internal reflection for photons more
    than 48 deg off the local normal in water), the reflected part leaving through the glass again:
    reflectivity = r_out + (1 - r_out)^2 RGCFF r_in, detection = (1 - r_out) (1 - RGCFF) QE_RATIO."""
    sin2 = (np.arange(samples) + 0.5) / samples
    cos_water = np.sqrt(1.0 - sin2)
    r_out = fresnel_reflectance(N_WATER_400, N_GLASS_400, cos_water)
    cos_glass = np.sqrt(1.0 - (N_WATER_400 / N_GLASS_400) ** 2 * sin2)
    r_in = fresnel_reflectance(N_GLASS_400, 1.0, cos_glass)
    reflectivity = np.mean(r_out + (1.0 - r_out) ** 2 * RGCFF * r_in)
    detection = np.mean((1.0 - r_out) * (1.0 - RGCFF)) * QE_RATIO
    return PMTSurface(reflectivity=float(reflectivity), detection=float(detection))
