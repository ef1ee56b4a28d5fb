"""Fast, vectorised, deterministic toy water-Cherenkov simulation.

Each simulated particle is a *light source* on a straight line from its vertex along its direction:

* muons (``mu-``, ``mu+``) lose ``muon_dedx`` MeV/cm continuously; light is emitted from the vertex until
  the muon drops below the Cherenkov threshold or leaves the tank, at cos(theta) = 1/(beta n) with beta
  computed at the emission point (the ring angle shrinks as the muon slows) and a Frank-Tamm weight
  sin^2(theta); photon angles get a small Gaussian smear (multiple scattering); their knock-on electrons
  add broad light (:mod:`recoml.families.water_cherenkov.delta_rays`);
* electrons/positrons shower: emission points follow a longitudinal gamma-distribution profile in
  radiation lengths (t_max = ln(E/E_c) - 0.5, b = 0.5), the total Cherenkov-equivalent track length is
  ``shower_cm_per_mev`` x E (Geant4 cascades, Raedel and Wiebusch 2013), photon angles to the axis follow
  their Geant4 angular profile (a sharp peak at the Cherenkov angle over broad tails) -- fuzzier rings;
* gammas travel an exponential distance (mean 9/7 X0) without light, then shower like an electron;
* pi0 decay at the vertex into two gammas (see :func:`recoml.families.water_cherenkov.particles.pi0_decay`);
* muons that stop in the tank decay into a Michel electron (a late, low-energy shower at the stopping
  point; mu- may be captured instead).

Light may Rayleigh-scatter once on its way, and is reflected once where it meets the wall (PMTs and
black sheet, WCSim's reflectivities); each photon travels at its own group velocity (chromatic
dispersion over the detected spectrum, :mod:`recoml.families.water_cherenkov.optics`) and is absorbed
with the absorption length of its wavelength (the same draw).

Photons are Monte-Carlo sampled *after* folding in the quantum and collection efficiencies (so only
photons that a PMT could record are traced; those emitted beyond the wall are dropped before tracing):
each gets an emission point, a direction on the cone, an
analytic intersection with the cylinder, a constant-time PMT lookup
(:mod:`recoml.families.water_cherenkov.wall`) and is then
kept with probability angular acceptance x exp(-d / absorption length at the photon's wavelength) (x the
muon's Frank-Tamm weight).
Photons are sampled in bundles of 8 sharing an emission point and cone angle, 45 deg apart in azimuth
(see :data:`BUNDLE`), and traced in blocks of whole events, all in float32 numpy.
Solid angle and coverage emerge from the geometry. Charge is the number of photoelectrons with a
Gaussian gain smear; the hit time is the earliest photon's (emission time along the track, the particle
moving at its speed, plus path / (c/n)) plus one Gaussian transit-time jitter. Dark-noise hits are added
uniformly in the readout window and merged with signal hits on the same PMT.

Times are in ns with t = 0 when the primary particle starts at its vertex; distances in cm; energies are
kinetic energies in MeV.
"""

from __future__ import annotations

import concurrent.futures as cf
import functools
import logging
import multiprocessing as mp
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import gammaincinv, ndtri

from recoml.errors import ConfigError
from recoml.families.water_cherenkov import wall as wall_module
from recoml.families.water_cherenkov.delta_rays import knock_on_tables
from recoml.families.water_cherenkov.detector import WCDetector
from recoml.families.water_cherenkov.digitizer import (
    CHARGE_SCALE,
    THRESHOLD_CHARGE_ERROR,
    spe_charge_quantiles,
    threshold_acceptance,
)
from recoml.families.water_cherenkov.optics import (
    absorption_quantiles,
    group_index_quantiles,
    wcsim_pmt_surface,
)
from recoml.families.water_cherenkov.particles import (
    ELECTRON_MASS,
    KIND_GAMMA,
    KIND_MUON,
    KIND_PI0,
    KIND_SHOWER,
    MUON_MASS,
    PARTICLES,
    check_particles,
    directions_to_angles,
    isotropic_directions,
    orthonormal_frames,
    pi0_decay,
    uniform_cylinder_points,
)
from recoml.families.water_cherenkov.showers import RAEDEL_WIEBUSCH_ELECTRON, cascade_angle_quantiles
from recoml.families.water_cherenkov.wall import WallMap, wall_map

log = logging.getLogger(__name__)

C_LIGHT = 29.9792458  # cm/ns

# Photons are traced in blocks of whole events of about this many photons (counted before the samples
# emitted outside the tank are dropped): big enough to amortise numpy's per-call overhead (~1,000 calls
# per block), small enough for the temporaries to stay in the L3 cache (2^18 and 2^20 are 5-15% slower).
BLOCK_PHOTONS = 1 << 19
# Photons come in bundles sharing an emission point and cone angle, at azimuths 45 degrees apart: the
# per-sample work is shared by 8 photons (2-3x faster). Each PMT still sees a Poisson number of photons
# with the right mean (as long as it subtends < 45 deg of azimuth seen from the track, i.e. always but
# for a 20-inch PMT within ~1 m); the total light of an event fluctuates somewhat more than Poisson,
# like real shower fluctuations.
BUNDLE = 8

_WCSIM_PMT_SURFACE = wcsim_pmt_surface()

#: Cherenkov-equivalent track length of an electromagnetic cascade in water (cm per MeV): Raedel and
#: Wiebusch's Geant4 value in ice, 532.07 cm/GeV at 0.91 g/cm^3, scaled by the density (see PhysicsConfig).
SHOWER_CM_PER_MEV = 0.53207 * 0.91 / 1.00

# Lookup-table resolutions (random 16-bit numbers index them; see _Tables).
_Q_BINS = 1024  # quantiles of the emission-point distributions
_A_STEP = 1.0 / 16.0  # shower profile shape parameter grid
_A_MAX = 6.0
_ANGLE_BINS = 4096  # azimuth on the cone, shower angle and Gaussian angular smear quantiles


@dataclass(frozen=True)
class PhysicsConfig:
    """Every physics number of the toy simulation (cm, ns, MeV). Built from Hydra as ``PhysicsConfig(**cfg)``.

    The defaults trace 764 x 0.24 x 0.9 x sin^2(theta) = 72 photons per cm of a beta = 1 track. With them
    a 500 MeV (kinetic) particle at the tank centre, isotropic direction, gives on average:

    - WCTE (2,014 3-inch PMTs): e- ~630 hits / ~2,480 p.e.; mu- ~460 / ~2,240; gamma ~460 / ~1,930;
    - HK (19,994 20-inch box-and-line PMTs): e- ~2,310 hits / ~3,150 p.e.; mu- ~1,570 / ~2,650; gamma
      ~2,300 / ~3,170

    (muons leave WCTE before ranging out; gammas often convert outside it) plus n_pmts x dark_rate x
    readout_window dark hits (3 in WCTE, 113 in HK per event).
    """

    # Phase index (Cherenkov angle, cos = 1 / (beta n)) and group index (photon speed c / n_g) of water,
    # averaged over the detected spectrum (~400 nm): n = 1.33-1.34, n_g = n - lambda dn/dlambda = 1.38
    # (a fit of real WCSim Hyper-K hit times gives 1.38).
    refractive_index: float = 1.33
    group_index: float = 1.38
    # Chromatic dispersion: each photon's group index is group_index plus a deviation drawn from the
    # detected spectrum (water's n(lambda) x the PMT QE, see optics.py): spread 0.018, blue tail late.
    chromatic_dispersion: bool = True
    # Frank-Tamm photons per cm per unit sin^2(theta) in the 300-600 nm band PMTs see:
    # 2 pi alpha (1/300 nm - 1/600 nm) = 764/cm (about 330/cm for a beta = 1 particle in water).
    frank_tamm_photons_per_cm: float = 764.0
    # Quantum efficiency x collection efficiency, folded into the number of photons traced; None: the PMT
    # type's (wavelength-averaged over the Frank-Tamm spectrum, see PMT_TYPES).
    quantum_efficiency: float | None = None
    collection_efficiency: float | None = None
    # Pure water (WCSim's tables, see optics.py). Absorbed photons are lost: attenuation_length None draws
    # each photon's wavelength from the detected spectrum and absorbs it with WCSim's ABSORPTION_water x
    # ABWFF 1.30 at that wavelength (19 m at 550 nm, 550 m at 400 nm); a number (cm) is one length for
    # every photon. Rayleigh-scattered photons change direction (1 + cos^2 phase function) and are traced on
    # to the wall (one scatter) after an exponential distance of scattering_length: WCSim's RAYLEIGH_water
    # x RAYFF 0.75 averaged over the detected spectrum is 100.6 m (optics.mean_rayleigh_length).
    attenuation_length: float | None = None  # cm, absorption length; None: per wavelength (WCSim)
    scattering_length: float = 10000.0  # cm, Rayleigh scattering length (inf: no scattering)
    muon_dedx: float = 2.0  # MeV/cm, continuous energy loss of muons
    radiation_length: float = 36.0  # cm, X0 of water
    critical_energy: float = 78.0  # MeV, E_c of water, sets the shower maximum
    shower_b: float = 0.5  # longitudinal profile dE/dt ~ t^(a-1) exp(-b t), t in X0
    # Cherenkov-equivalent track length of an electromagnetic cascade per MeV: Geant4's 5.3207 m/GeV for
    # electrons in ice of 0.91 g/cm^3 (Raedel and Wiebusch, Astropart. Phys. 44 (2013) 102, arXiv:1210.5140,
    # l = alpha E^beta with alpha = 532.07 cm/GeV, beta = 1.000; positrons 532.11, gammas 532.09), scaled to
    # water by the density ratio 0.91 / 1.00 (their eq. 9): 0.4842 cm/MeV.
    shower_cm_per_mev: float = SHOWER_CM_PER_MEV
    # Shower photon angles to the shower axis: Raedel and Wiebusch's Geant4 fit for electron cascades,
    # (1 / N) dN / dOmega = a exp(b |cos theta - 1 / n|^c) + d (showers.py): a sharp peak at the Cherenkov
    # angle from the nearly axis-parallel charged particles over broad tails from the low-energy ones.
    shower_angle_a: float = RAEDEL_WIEBUSCH_ELECTRON[0]
    shower_angle_b: float = RAEDEL_WIEBUSCH_ELECTRON[1]
    shower_angle_c: float = RAEDEL_WIEBUSCH_ELECTRON[2]
    shower_angle_d: float = RAEDEL_WIEBUSCH_ELECTRON[3]
    # Muons: Highland multiple scattering of the muon direction at each emission point, a constant extra
    # smear, and the Cherenkov light of their knock-on electrons (delta rays, PDG spectrum and kinematics,
    # added to the muon's own light at the local muon momentum: 9 % of it at 500 MeV; delta_rays.py).
    muon_multiple_scattering: bool = True
    muon_angle_sigma: float = 0.0  # deg
    muon_delta_rays: bool = True
    # Reflection at the tank wall, one bounce (WCSim's optical surfaces and tuning defaults): a photon that
    # reaches a PMT is reflected with pmt_reflectivity (WCSim's glass dome and glass-photocathode surface,
    # RGCFF = 0.32 in Geant4's sense, averaged over the dome: 0.176, optics.wcsim_pmt_surface; specular off
    # the PMT sphere, which spreads a beam isotropically: drawn uniform over the inward hemisphere); one
    # that reaches the black sheet with wall_reflectivity (WCSim 0.055 x BSRFF 2.5, Lambertian:
    # "groundfrontpainted"). 0 switches either off.
    pmt_reflectivity: float = _WCSIM_PMT_SURFACE.reflectivity
    wall_reflectivity: float = 0.1375
    # Muons that stop in the tank decay into a Michel electron after an exponential time (mu+: 2,197 ns;
    # mu-: 1,795 ns in water, after nuclear capture on oxygen took muon_capture_fraction of them; Suzuki,
    # Measday, Roalsvig, Phys. Rev. C 35 (1987) 2212). Its light counts as its muon's (hit_parent).
    decay_electrons: bool = True
    mu_plus_lifetime: float = 2197.0  # ns
    mu_minus_lifetime: float = 1795.0  # ns, in water (oxygen)
    muon_capture_fraction: float = 0.184  # mu- captured by oxygen (no electron)
    # PMT model (a key of PMT_TYPES): transit-time spread and dark rate. None: R14374 3-inch PMTs for
    # mPMT detectors, the Hyper-K 20-inch box-and-line PMT otherwise.
    pmt_type: str | None = None
    # ns; None: the PMT type's charge-dependent transit-time spread; a number: one Gaussian of that sigma.
    time_jitter: float | None = None
    # Charge and threshold: WCSim's single-p.e. spectrum of the PMT type and its SKI digitiser threshold
    # (digitizer.py); digitizer_threshold=False keeps every hit (and draws dark noise at dark_rate).
    digitizer_threshold: bool = True
    dark_rate: float | None = None  # Hz per PMT after the threshold, as WCSim quotes it; None: the PMT type's
    # Trigger (WCSim's NDigits): the event time t = 0 is when trigger_hits signal hits first fall within
    # trigger_window ns; hit times are relative to it, the readout window [window_start, window_start +
    # readout_window) too (WCSim: -400 to +950 ns), and the vertex time is stored relative to it. An
    # event that never triggers keeps its first hit as t = 0. trigger=False: t = 0 at the vertex.
    trigger: bool = True
    trigger_hits: int = 25
    trigger_window: float = 200.0
    readout_window: float = 1350.0  # ns, length of the readout window
    window_start: float = -400.0  # ns, start of the readout window (signal hits outside it are dropped)
    acceptance_power: float = 0.5  # PMT response ~ cos(incidence vs facing)^power (0 behind the PMT)
    # Photon-capture radius on the wall around each PMT for mPMT detectors (3-inch PMTs, 3.6 cm
    # photocathode, plus the reflector cone); single-PMT detectors use the detector's pmt_radius.
    mpmt_collection_radius: float = 4.0

    def __post_init__(self) -> None:
        if self.refractive_index <= 1.0:
            raise ConfigError(f"physics.refractive_index must be > 1, got {self.refractive_index}")
        for name in (
            "pmt_reflectivity",
            "wall_reflectivity",
            "muon_capture_fraction",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"physics.{name} must be in [0, 1], got {getattr(self, name)}")
        if self.group_index < 1.0:
            raise ConfigError(f"physics.group_index must be >= 1, got {self.group_index}")
        if self.pmt_type is not None and self.pmt_type not in PMT_TYPES:
            raise ConfigError(f"physics.pmt_type must be one of {sorted(PMT_TYPES)}, got '{self.pmt_type}'")
        if self.trigger_hits < 1 or self.trigger_window <= 0:
            raise ConfigError("physics.trigger_hits must be >= 1 and physics.trigger_window > 0")
        if self.attenuation_length is not None and self.attenuation_length <= 0:
            raise ConfigError(
                f"physics.attenuation_length must be > 0 or None, got {self.attenuation_length}"
            )
        for name in (
            "scattering_length",
            "radiation_length",
            "critical_energy",
            "shower_b",
            "mu_plus_lifetime",
            "mu_minus_lifetime",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"physics.{name} must be > 0, got {getattr(self, name)}")
        if self.muon_dedx <= 0:
            raise ConfigError(f"physics.muon_dedx must be > 0, got {self.muon_dedx}")
        if self.readout_window <= 0:
            raise ConfigError(f"physics.readout_window must be > 0, got {self.readout_window}")
        if self.dark_rate is not None and self.dark_rate < 0:
            raise ConfigError(f"physics.dark_rate must be >= 0, got {self.dark_rate}")
        if self.time_jitter is not None and self.time_jitter < 0:
            raise ConfigError(f"physics.time_jitter must be >= 0, got {self.time_jitter}")
        for name in ("quantum_efficiency", "collection_efficiency"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ConfigError(f"physics.{name} must be in [0, 1], got {value}")

    def detected_photons_per_cm(self, detector: WCDetector) -> float:
        """Photons per cm (per unit sin^2 theta) that survive the PMT surfaces, QE and collection, i.e. that
        are traced."""
        pmt = self.pmt(detector)
        qe = pmt.quantum_efficiency if self.quantum_efficiency is None else self.quantum_efficiency
        ce = pmt.collection_efficiency if self.collection_efficiency is None else self.collection_efficiency
        return self.frank_tamm_photons_per_cm * qe * ce * pmt.surface_detection

    @property
    def conversion_length(self) -> float:
        """Mean gamma conversion distance, 9/7 X0 (cm)."""
        return 9.0 / 7.0 * self.radiation_length

    def collection_radius(self, detector: WCDetector) -> float:
        return self.mpmt_collection_radius if detector.pmts_per_module > 1 else float(detector.pmt_radius)

    def pmt(self, detector: WCDetector) -> PMTType:
        """The PMT model of ``detector`` (``pmt_type``, else by the detector's PMT size)."""
        if self.pmt_type is not None:
            return PMT_TYPES[self.pmt_type]
        return PMT_TYPES["R14374" if detector.pmts_per_module > 1 else "BoxandLine20inchHQE"]

    def dark_rate_of(self, detector: WCDetector) -> float:
        return self.pmt(detector).dark_rate if self.dark_rate is None else float(self.dark_rate)


@dataclass(frozen=True)
class PMTType:
    """A PMT model's timing and dark noise, as WCSim simulates it (WCSimPMTObject.cc, PMTResponse.cc).

    ``timing``: ``constant`` (Gaussian of ``sigma`` ns), ``sk`` (Gaussian, sigma = max(0.58, 0.33 +
    sqrt(10 / Q)) ns, WCSim PMT20inch from SK's 20-inch jitter) or ``box_and_line`` (WCSim
    BoxandLine20inchHQE: Normal(-0.2, sigma(Q)) plus an exponential late tail of mean 1 / (0.4113 +
    0.07827 Q) ns).
    """

    name: str
    dark_rate: float  # Hz, after the digitiser threshold
    timing: str
    quantum_efficiency: float  # averaged over the Frank-Tamm spectrum (~1 / lambda^2) in 300-600 nm
    collection_efficiency: float
    sigma: float = 0.0
    # WCSim's single-p.e. charge table (digitizer.SPE_TYPES) and the factor by which WCSim raises the dark
    # rate to draw dark photoelectrons before its threshold (GetDarkRateConversionFactor).
    spe: str = "BoxandLine20inchHQE"
    dark_conversion: float = 1.110
    # Fraction of the photons reaching the PMT that its surfaces hand to the QE: WCSim's 20-inch glass and
    # photocathode surface with its QE scale (optics.wcsim_pmt_surface); 1 where QE x CE is the whole story.
    surface_detection: float = _WCSIM_PMT_SURFACE.detection

    def time_smear(self, charge: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Transit-time smear (ns) of hits of ``charge`` p.e. (at least 0.5, as in WCSim's digitiser)."""
        q = np.maximum(np.asarray(charge, dtype=np.float64), 0.5)
        if self.timing == "constant":
            return self.sigma * rng.standard_normal(len(q))
        if self.timing == "sk":
            return np.maximum(0.58, 0.33 + np.sqrt(10.0 / q)) * rng.standard_normal(len(q))
        s0, s1, s2, s3 = _BL_SIGMA
        low = s0 * (np.exp(-s1 * q) + s2)
        high_a = 2 * s0 * s1 * s3 * np.sqrt(s3) * np.exp(-s1 * s3)
        high_b = s0 * ((1 - 2 * s1 * s3) * np.exp(-s1 * s3) + s2)
        sigma = np.where(q < s3, low, high_a / np.sqrt(q) + high_b)
        lam = _BL_LAMBDA[0] + _BL_LAMBDA[1] * q
        return -0.2 + sigma * rng.standard_normal(len(q)) + rng.exponential(1.0, len(q)) / lam


_BL_SIGMA = (0.6314, 0.06260, 0.5711, 23.96)
_BL_LAMBDA = (0.4113, 0.07827)
#: Dark rates: 20-inch 4.2 kHz (SK-I in SKDetSim and WCSim's PMT20inch; real WCSim Hyper-K events show
#: ~110 dark hits per 1.35 us on 19,994 PMTs = 4.1 kHz); 3-inch R14374 1 kHz (order of the datasheet's
#: dark count; WCTE's measured rates vary per channel). Timing: WCSim's models (see PMTType).
#: Detection efficiency: WCSim's QE tables (WCSimPMTObject.cc, 280-660 nm in 20 nm steps) averaged with
#: the Frank-Tamm weight 1 / lambda^2 over 300-600 nm, and WCSim's collection efficiency: box-and-line
#: (HQE R3600 table x 1 / 0.73, WCSim's factor for the B&L photon detection) 0.276 x CE 0.95; SK 20-inch
#: R3600 (PMT20inch) 0.135 x CE 1.0, both times WCSim's surface detection 0.877 (a photon reaching the
#: 20-inch PMT passes the water-glass boundary, 3 %, and the glass-photocathode surface, whose REFLECTIVITY
#: 0.32 sends a third of the photons to a Fresnel boundary instead of the photocathode; the QE is scaled by
#: 1 / (1 - 0.25): optics.wcsim_pmt_surface). The 3-inch R14374 keeps the toy's WCTE values 0.24 x 0.9.
PMT_TYPES: dict[str, PMTType] = {
    "R14374": PMTType(
        "R14374",
        dark_rate=1000.0,
        timing="constant",
        quantum_efficiency=0.24,
        collection_efficiency=0.9,
        sigma=0.6,
        surface_detection=1.0,
        spe="PMT3inchR14374",
    ),
    "BoxandLine20inchHQE": PMTType(
        "BoxandLine20inchHQE",
        dark_rate=4200.0,
        timing="box_and_line",
        quantum_efficiency=0.276,
        collection_efficiency=0.95,
    ),
    "R3600": PMTType(
        "R3600",
        dark_rate=4200.0,
        timing="sk",
        quantum_efficiency=0.135,
        collection_efficiency=1.0,
        spe="PMT20inch",
        dark_conversion=1.367,
    ),
}


# --------------------------------------------------------------------------------------------------
# Lookup tables


def _random_u16(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` uniform 16-bit integers (indices into 65,536-entry quantile tables)."""
    return rng.bit_generator.random_raw((n + 3) // 4).view(np.uint16)[:n]


@functools.lru_cache(maxsize=1)
def _quantile_table() -> np.ndarray:
    """Row 0: uniform quantiles; row k >= 1: Gamma(a_k) quantiles, a_k = 1 + (k - 1) * _A_STEP."""
    p = (np.arange(_Q_BINS) + 0.5) / _Q_BINS
    a = 1.0 + np.arange(int(round((_A_MAX - 1.0) / _A_STEP)) + 1) * _A_STEP
    table = np.vstack([p[None], gammaincinv(a[:, None], p[None])])
    return table.astype(np.float32).ravel()


@dataclass(frozen=True)
class _Tables:
    """Lookup tables indexed by random 16-bit integers (cheaper than sin/cos/normal per photon)."""

    quantiles: np.ndarray  # flat (rows * _Q_BINS,)
    cos_phi: np.ndarray  # (_ANGLE_BINS,)
    sin_phi: np.ndarray
    smear: np.ndarray  # (2 * _ANGLE_BINS,) rad: row 0 shower profile quantiles, row 1 unit normal ones
    exp_quantiles: np.ndarray  # (65536,): -ln(u) at the 16-bit quantiles u (exponential distances)
    # Per wavelength bin of the detected spectrum (1024 equal-probability bins, one draw per photon):
    group_delta: np.ndarray  # group-index deviations from the mean over the spectrum
    inv_absorption: np.ndarray  # 1 / absorption length (1/cm)


@functools.lru_cache(maxsize=8)
def _tables(physics: PhysicsConfig) -> _Tables:
    phi = 2.0 * np.pi * (np.arange(_ANGLE_BINS) + 0.5) / _ANGLE_BINS
    p = (np.arange(_ANGLE_BINS) + 0.5) / _ANGLE_BINS
    z = ndtri(p)
    # Row 0: a shower photon's angle to the axis minus the Cherenkov angle (Raedel-Wiebusch quantiles);
    # row 1: unit normal quantiles (muons scale them by their scattering angle).
    shower = cascade_angle_quantiles(
        float(physics.refractive_index),
        (physics.shower_angle_a, physics.shower_angle_b, physics.shower_angle_c, physics.shower_angle_d),
        _ANGLE_BINS,
    )
    delta = np.concatenate([shower, np.deg2rad(z)])
    f32 = np.float32
    return _Tables(
        quantiles=_quantile_table(),
        cos_phi=np.cos(phi).astype(f32),
        sin_phi=np.sin(phi).astype(f32),
        smear=delta.astype(f32),
        exp_quantiles=(-np.log((np.arange(65536) + 0.5) / 65536)).astype(f32),
        group_delta=group_index_quantiles(),
        inv_absorption=absorption_quantiles(),
    )


# --------------------------------------------------------------------------------------------------
# Light sources


def _distance_to_wall(
    vertices: np.ndarray, directions: np.ndarray, radius: float, half_height: float
) -> np.ndarray:
    """Distance along each direction from an inside vertex to the cylinder wall (0 for vertices outside)."""
    o, d = vertices, directions
    a = d[:, 0] ** 2 + d[:, 2] ** 2
    b = o[:, 0] * d[:, 0] + o[:, 2] * d[:, 2]
    c = o[:, 0] ** 2 + o[:, 2] ** 2 - radius**2
    with np.errstate(divide="ignore", invalid="ignore"):
        t_barrel = np.where(a > 1e-12, (np.sqrt(np.maximum(b * b - a * c, 0.0)) - b) / a, np.inf)
        t_cap = np.where(d[:, 1] != 0, (np.copysign(half_height, d[:, 1]) - o[:, 1]) / d[:, 1], np.inf)
    t = np.minimum(t_barrel, t_cap)
    inside = (c <= 0) & (np.abs(o[:, 1]) <= half_height)
    return np.where(inside, np.maximum(t, 0.0), 0.0)


@dataclass
class _Sources:
    """Per simulated particle (sorted by event), everything the photon tracer needs (float64)."""

    event: np.ndarray  # (M,) int64 event index
    parent: np.ndarray  # (M,) int32 index of the particle within its event
    kind: np.ndarray  # (M,) int8 KIND_SHOWER / KIND_MUON (gammas become showers after conversion)
    vertex: np.ndarray  # (M, 3)
    direction: np.ndarray  # (M, 3)
    frame_u: np.ndarray  # (M, 3) unit, perpendicular to direction
    frame_v: np.ndarray  # (M, 3) unit, direction x frame_u
    start: np.ndarray  # (M,) cm along the direction where light starts (gamma conversion point)
    scale: np.ndarray  # (M,) cm: emitting length (muon) or X0 / b (shower)
    qrow: np.ndarray  # (M,) intp offset of the emission-point quantile row
    e0: np.ndarray  # (M,) total energy at the vertex (muon) or 1 (shower: beta = 1)
    p0: np.ndarray  # (M,) momentum at the vertex (muon) or 1
    m2: np.ndarray  # (M,) mass^2 (muon) or 0
    dedx: np.ndarray  # (M,) MeV/cm (muon) or 0
    sin2max: np.ndarray  # (M,) largest emission weight along the track: sin^2 theta (+ knock-on light)
    highland: np.ndarray  # (M,) rad, 13.6 MeV / (beta p) at the vertex (muons; 0 otherwise)
    t_exit: np.ndarray  # (M,) cm from the vertex to the wall along the direction
    mean_photons: np.ndarray  # (M,) expected number of traced photons
    delay: np.ndarray  # (M,) ns from the event's start to this source's (decay electrons), else 0

    def __post_init__(self) -> None:
        # float32 copies used per photon
        self.t_exit32 = self.t_exit.astype(np.float32)
        self.delay32 = self.delay.astype(np.float32)
        with np.errstate(divide="ignore"):
            self.inv_sin2max32 = np.where(self.sin2max > 0, 1.0 / self.sin2max, 0.0).astype(np.float32)


def light_sources(
    detector: WCDetector,
    kinds: Sequence[str],
    energies: np.ndarray,
    vertices: np.ndarray,
    directions: np.ndarray,
    rng: np.random.Generator,
    physics: PhysicsConfig = PhysicsConfig(),
    *,
    event: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The simulated particles (after pi0 decay) as light sources: where light starts, how much, etc.

    Exposed for tests and debugging (e.g. the gamma conversion distance is ``start`` of a gamma);
    :func:`simulate_particles` draws the same numbers from ``rng`` in the same order.
    """
    src = _make_sources(detector, kinds, energies, vertices, directions, rng, physics, event)
    return {name: getattr(src, name) for name in src.__dataclass_fields__}


def _make_sources(
    detector: WCDetector,
    kinds: Sequence[str],
    energies: np.ndarray,
    vertices: np.ndarray,
    directions: np.ndarray,
    rng: np.random.Generator,
    physics: PhysicsConfig,
    event: np.ndarray | None,
) -> _Sources:
    kinds = check_particles(list(kinds), allow_empty=True)
    n_prim = len(kinds)
    energies = np.asarray(energies, dtype=np.float64).reshape(n_prim)
    vertices = np.asarray(vertices, dtype=np.float64).reshape(n_prim, 3)
    directions = np.asarray(directions, dtype=np.float64).reshape(n_prim, 3)
    directions = directions / np.linalg.norm(directions, axis=1, keepdims=True)
    event = np.arange(n_prim) if event is None else np.asarray(event, dtype=np.int64).reshape(n_prim)
    kind = np.array([PARTICLES[k].kind for k in kinds], dtype=np.int8)
    mu_minus = np.array([k == "mu-" for k in kinds], dtype=bool)

    # pi0 -> two gammas at the pi0 vertex.
    is_pi0 = kind == KIND_PI0
    if is_pi0.any():
        e_g, d_g = pi0_decay(energies[is_pi0], directions[is_pi0], rng)
        keep = ~is_pi0
        n_pi0 = int(is_pi0.sum())
        order_key = np.concatenate([np.flatnonzero(keep), np.repeat(np.flatnonzero(is_pi0), 2)])
        kind = np.concatenate([kind[keep], np.full(2 * n_pi0, KIND_GAMMA, np.int8)])
        mu_minus = np.concatenate([mu_minus[keep], np.zeros(2 * n_pi0, dtype=bool)])
        energies = np.concatenate([energies[keep], e_g.ravel()])
        vertices = np.concatenate([vertices[keep], np.repeat(vertices[is_pi0], 2, axis=0)])
        directions = np.concatenate([directions[keep], d_g.reshape(-1, 3)])
        event = np.concatenate([event[keep], np.repeat(event[is_pi0], 2)])
        # restore the primaries' order (the two gammas of a pi0 stay in decay order)
        perm = np.lexsort((np.arange(len(order_key)), order_key))
        kind, energies, vertices, directions, event, mu_minus = (
            kind[perm],
            energies[perm],
            vertices[perm],
            directions[perm],
            event[perm],
            mu_minus[perm],
        )
    order = np.argsort(event, kind="stable")
    kind, energies, vertices, directions, event, mu_minus = (
        kind[order],
        energies[order],
        vertices[order],
        directions[order],
        event[order],
        mu_minus[order],
    )
    # parent = running index within each event
    first = np.searchsorted(event, event, side="left")
    parent = (np.arange(len(kind)) - first).astype(np.int32)
    delay = np.zeros(len(kind))
    if physics.decay_electrons and (kind == KIND_MUON).any():
        extra = _decay_electrons(kind, energies, vertices, directions, mu_minus, detector, physics, rng)
        source = extra.pop("source")
        kind = np.concatenate([kind, np.full(len(source), KIND_SHOWER, np.int8)])
        energies = np.concatenate([energies, extra["energy"]])
        vertices = np.concatenate([vertices, extra["vertex"]])
        directions = np.concatenate([directions, extra["direction"]])
        delay = np.concatenate([delay, extra["delay"]])
        parent = np.concatenate([parent, parent[source]])
        event = np.concatenate([event, event[source]])
        order = np.argsort(event, kind="stable")  # each event's decay electrons after its primaries
        kind, energies, vertices, directions, delay, parent, event = (
            kind[order],
            energies[order],
            vertices[order],
            directions[order],
            delay[order],
            parent[order],
            event[order],
        )
    m = len(kind)

    n_idx = physics.refractive_index
    t_exit = _distance_to_wall(vertices, directions, detector.radius, detector.half_height)
    start = np.zeros(m)
    scale = np.zeros(m)
    qrow = np.zeros(m, dtype=np.intp)
    e0 = np.ones(m)
    p0 = np.ones(m)
    m2 = np.zeros(m)
    dedx = np.zeros(m)
    sin2max = np.full(m, 1.0 - 1.0 / n_idx**2)
    highland = np.zeros(m)
    mean = np.zeros(m)
    yield_cm = physics.detected_photons_per_cm(detector)

    is_gamma = kind == KIND_GAMMA
    start[is_gamma] = rng.exponential(physics.conversion_length, int(is_gamma.sum()))
    shower = (kind == KIND_SHOWER) | is_gamma
    # Longitudinal profile Gamma(a, b) in X0 with a = 1 + b t_max.
    tmax = np.log(np.maximum(energies[shower], 1e-3) / physics.critical_energy) - 0.5
    a = 1.0 + physics.shower_b * np.maximum(tmax, 0.0)
    row = 1 + np.clip(np.rint((a - 1.0) / _A_STEP), 0, round((_A_MAX - 1.0) / _A_STEP)).astype(np.intp)
    qrow[shower] = row * _Q_BINS
    # Profile scale X0 / b, shrunk for low energies so the mean depth a * scale never exceeds the
    # shower's total track length (a 30 MeV electron is a ~15 cm track, not a 70 cm shower).
    track = physics.shower_cm_per_mev * energies[shower]
    scale[shower] = np.minimum(physics.radiation_length / physics.shower_b, track / a)
    mean[shower] = yield_cm * sin2max[shower] * physics.shower_cm_per_mev * energies[shower]
    mean[is_gamma & (start >= t_exit)] = 0.0  # converts outside the tank: no light
    kind = np.where(is_gamma, KIND_SHOWER, kind).astype(np.int8)

    muon = kind == KIND_MUON
    if muon.any():
        tables = knock_on_tables(float(n_idx))
        mass = MUON_MASS
        e_mu = energies[muon] + mass
        p_mu = np.sqrt(e_mu**2 - mass**2)
        e_thr = mass / np.sqrt(1.0 - 1.0 / n_idx**2)  # total energy at beta = 1/n
        length = np.minimum(np.maximum(e_mu - e_thr, 0.0) / physics.muon_dedx, t_exit[muon])
        s2 = np.maximum(1.0 - (e_mu / (n_idx * p_mu)) ** 2, 0.0)
        e0[muon], p0[muon], m2[muon], dedx[muon] = e_mu, p_mu, mass**2, physics.muon_dedx
        scale[muon] = length
        # knock-on electrons' light, largest at the vertex momentum, in units of a beta = 1 track's sin^2
        knock_on = (
            (1.0 - 1.0 / n_idx**2) * np.interp(np.log(p_mu), tables.log_momentum, tables.per_cm)
            if physics.muon_delta_rays
            else 0.0
        )
        sin2max[muon] = s2 + knock_on
        highland[muon] = 13.6 / (p_mu * p_mu / e_mu)  # 13.6 MeV / (beta p), beta p = p^2 / E
        mean[muon] = yield_cm * sin2max[muon] * length
    frame_u, frame_v = orthonormal_frames(directions)
    return _Sources(
        event=event,
        parent=parent,
        kind=kind,
        vertex=vertices,
        direction=directions,
        frame_u=frame_u,
        frame_v=frame_v,
        start=start,
        scale=scale,
        qrow=qrow,
        e0=e0,
        p0=p0,
        m2=m2,
        dedx=dedx,
        sin2max=sin2max,
        highland=highland,
        t_exit=t_exit,
        mean_photons=mean,
        delay=delay,
    )


#: Largest Michel electron energy (m_mu^2 + m_e^2) / (2 m_mu), MeV.
MICHEL_ENDPOINT = 52.83


def michel_energies(u: np.ndarray) -> np.ndarray:
    """Total energies (MeV) of muon-decay electrons from uniform ``u``: the Michel spectrum
    ``dN/dx ~ x^2 (3 - 2 x)``, ``x = E / E_max`` (rho = 3/4, electron mass and radiative corrections
    neglected; PDG review "Muon decay parameters"), by inverting its CDF ``2 x^3 - x^4``."""
    x = np.linspace(0.0, 1.0, 2049)
    return MICHEL_ENDPOINT * np.interp(u, 2 * x**3 - x**4, x)


def _decay_electrons(
    kind: np.ndarray,
    energies: np.ndarray,
    vertices: np.ndarray,
    directions: np.ndarray,
    mu_minus: np.ndarray,
    detector: WCDetector,
    physics: PhysicsConfig,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """The Michel electrons of muons that stop inside the tank (range = kinetic energy / dE/dx): at the
    stopping point, isotropic, after the muon's travel time (p0 / (c dE/dx) for a constant dE/dx) plus an
    exponential decay time; mu- captured by oxygen give none. ``source``: index of each one's muon."""
    muon = np.flatnonzero(kind == KIND_MUON)
    u = rng.random((3, len(muon)))
    reach = energies[muon] / physics.muon_dedx
    inside = reach < _distance_to_wall(
        vertices[muon], directions[muon], detector.radius, detector.half_height
    )
    captured = mu_minus[muon] & (u[0] < physics.muon_capture_fraction)
    decays = inside & ~captured
    source = muon[decays]
    total = energies[source] + MUON_MASS
    stop_time = np.sqrt(total**2 - MUON_MASS**2) / (C_LIGHT * physics.muon_dedx)
    lifetime = np.where(mu_minus[source], physics.mu_minus_lifetime, physics.mu_plus_lifetime)
    return {
        "source": source,
        "vertex": vertices[source] + directions[source] * reach[decays, None],
        "direction": isotropic_directions(len(source), rng),
        "energy": np.maximum(michel_energies(u[2, decays]) - ELECTRON_MASS, 0.0),
        "delay": stop_time - lifetime * np.log1p(-u[1, decays]),
    }


# --------------------------------------------------------------------------------------------------
# Photon tracing


def _trace_block(
    src: _Sources,
    sl: slice,
    bundles: np.ndarray,
    wall: WallMap,
    tables: _Tables,
    physics: PhysicsConfig,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Trace the photons of particles ``sl``; returns (particle index, PMT, time) of each photoelectron.

    ``bundles[i]`` emission samples of particle ``i``, each with BUNDLE photons (see :data:`BUNDLE`).
    Per-sample work (emission point, cone angle, frame) is done once for its 8 photons; the photons are
    then traced one azimuth lane (8 lanes of ``nb`` photons) at a time.
    """
    f32 = np.float32
    nb = int(bundles.sum())
    if nb == 0:
        empty = np.zeros(0, np.intp)
        return empty, empty, np.zeros(0, f32)

    def rep(values: np.ndarray, dtype: type = f32) -> np.ndarray:
        return np.repeat(values[sl].astype(dtype, copy=False), bundles)

    k_s = _random_u16(rng, nb)

    # Emission point along the track (quantile tables: uniform for muons, gamma profile for showers).
    qi = (k_s >> 6).astype(np.intp)
    qi += rep(src.qrow, np.intp)
    s = np.take(tables.quantiles, qi, mode="wrap")
    s *= rep(src.scale)
    s += rep(src.start)
    # Light emitted beyond the wall (a shower's tail outside the tank: a third of WCTE's samples) is never
    # seen: drop those samples now rather than trace their photons and discard them after (as before):
    # the hits have the same distribution, only fewer random numbers are drawn.
    inside = s < rep(src.t_exit32)
    if not inside.all():
        keep = np.flatnonzero(inside)
        s = s[keep]
        bundles = np.bincount(
            np.repeat(np.arange(len(bundles), dtype=np.intp), bundles)[keep], minlength=len(bundles)
        )
        nb = len(keep)
        if nb == 0:
            empty = np.zeros(0, np.intp)
            return empty, empty, np.zeros(0, f32)
    bits = _random_u16(rng, 2 * nb)
    k_phi, k_sm = bits[:nb], bits[nb : 2 * nb]

    # Cherenkov angle from the local beta: cos = E / (n p); showers have E = p = 1.
    energy = rep(src.dedx)
    energy *= s
    np.subtract(rep(src.e0), energy, out=energy)
    mom = energy * energy
    mom -= rep(src.m2)
    np.maximum(mom, f32(1e-12), out=mom)
    np.sqrt(mom, out=mom)
    cos = energy / mom
    cos *= f32(1.0 / physics.refractive_index)
    np.minimum(cos, f32(1.0), out=cos)
    sin = cos * cos
    np.subtract(f32(1.0), sin, out=sin)
    np.sqrt(sin, out=sin)
    # Smear of the polar angle about the particle direction: the shower profile (showers), or for muons a
    # normal deviate times the Highland angle at the emission point (theta0 = 13.6 MeV / (beta p) sqrt(x /
    # X0) (1 + 0.038 ln(x / X0)), PDG eq. 34.15; the momentum at the vertex) combined with the constant
    # muon_angle_sigma.
    is_mu = rep((src.kind == KIND_MUON).astype(np.uint8), np.uint8).astype(bool)
    si = (k_sm >> 4).astype(np.intp)
    si += is_mu.astype(np.intp) * _ANGLE_BINS
    delta = np.take(tables.smear, si, mode="wrap")
    if is_mu.any():
        scale = np.full(nb, f32(np.deg2rad(physics.muon_angle_sigma)))
        if physics.muon_multiple_scattering:
            x = np.maximum(s - rep(src.start), f32(1e-3)) * f32(1.0 / physics.radiation_length)
            highland = rep(src.highland) * np.sqrt(x) * np.maximum(1.0 + f32(0.038) * np.log(x), f32(0.0))
            scale = np.sqrt(scale * scale + highland * highland)
        delta = np.where(is_mu, delta * scale, delta)
    cd = np.cos(delta)
    sd = np.sin(delta)
    cos2 = cos * cd
    cos2 -= sin * sd
    sin2 = sin * cd
    sin2 += cos * sd
    # Emission weight (Frank-Tamm sin^2 theta, applied at survival) and the muons' knock-on electrons: their
    # light (weight s2_1 x track per cm at the local momentum) is a sample's with probability weight_ko /
    # (sin^2 + weight_ko), at an angle to the muon from the table of its W_max bin.
    weight = sin * sin
    if physics.muon_delta_rays and is_mu.any():
        mu = np.flatnonzero(is_mu)
        ko_tables = knock_on_tables(float(physics.refractive_index))
        p_mu = np.take(mom, mu)
        ko = np.interp(np.log(p_mu), ko_tables.log_momentum, ko_tables.per_cm).astype(f32)
        ko *= f32(1.0 - 1.0 / physics.refractive_index**2)
        total = np.take(weight, mu) + ko
        weight[mu] = total
        u_ko = _random_u16(rng, len(mu)).astype(f32)
        chosen = np.flatnonzero((u_ko + f32(0.5)) * total < ko * f32(65536.0))
        rows = mu[chosen]
        ko_index = np.searchsorted(ko_tables.bin_edges, p_mu[chosen]) * _ANGLE_BINS
        ko_index += np.take(k_sm, rows) >> 4
        cos2[rows] = np.take(ko_tables.cos, ko_index)
        sin2[rows] = np.take(ko_tables.sin, ko_index)
    pi = (k_phi >> 4).astype(np.intp)
    ca = np.take(tables.cos_phi, pi, mode="wrap")
    ca *= sin2
    cb = np.take(tables.sin_phi, pi, mode="wrap")
    cb *= sin2

    # The BUNDLE = 8 photons of a sample have azimuths phi0 + k * 45 deg: d = C +- P_k (k = 0..3) with
    # C = cos2 w and P_k = sin2 (cos(phi0 + k 45) u + sin(phi0 + k 45) v); anything linear in d (the
    # quadratic's a and b below) is per-sample work plus one operation per photon.
    # Lengths from here on are in wall-map cells, so hit points come out as cell coordinates.
    inv_cell = f32(1.0 / wall.cell)
    r_tank, h_tank = f32(wall.radius / wall.cell), f32(wall.half_height / wall.cell)
    h = f32(np.sqrt(0.5))
    cvec, ovec = [], []
    pvec = np.empty((3, 4, nb), dtype=f32)
    for i in range(3):
        wi = rep(src.direction[:, i])
        ui = rep(src.frame_u[:, i])
        vi = rep(src.frame_v[:, i])
        cvec.append(cos2 * wi)
        p0, p1, p2, p3 = pvec[i]
        np.multiply(ca, ui, out=p0)
        p0 += cb * vi
        np.multiply(ca, vi, out=p1)
        p1 -= cb * ui
        np.add(p0, p1, out=p2)
        p2 *= h
        np.subtract(p1, p0, out=p3)
        p3 *= h
        oi = s * wi
        oi += rep(src.vertex[:, i])
        oi *= inv_cell
        ovec.append(oi)
    ox, oy, oz = ovec
    cx, cy, cz = cvec
    # Ray / cylinder intersection (origin inside): barrel root of a t^2 + 2 b t + c = 0 with
    # a = |d_xz|^2, b = o_xz . d_xz, c = |o_xz|^2 - R^2, or the cap plane. Every sample is emitted
    # inside the tank (the others were dropped above). One azimuth lane (sign, k) at a time keeps the
    # temporaries in the core's cache.
    px, pz = pvec[0], pvec[2]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        c = ox * ox
        c += oz * oz
        c -= r_tank * r_tank
        a_even = px * px
        a_even += pz * pz
        a_even += cx * cx + cz * cz  # |C|^2 + |P|^2 (xz)
        a_odd = px * cx
        a_odd += pz * cz
        a_odd *= f32(2.0)  # 2 C.P (xz)
        b_even = ox * cx + oz * cz
        b_odd = px * ox
        b_odd += pz * oz
        fx0 = ox + f32(1.0 + r_tank)
        fy0 = oy + f32(1.0 + h_tank)
        fz0 = oz + f32(1.0 + r_tank)
        lanes: list[tuple[np.ndarray, ...]] = []
        scattered: list[tuple[np.ndarray, ...]] = []
        reflected: list[tuple[np.ndarray, ...]] = []
        scatter_cells = (
            f32(physics.scattering_length / wall.cell) if np.isfinite(physics.scattering_length) else None
        )
        # Reflection with probability R_surface where the photon meets the wall unscattered. With
        # scattering, the scattering distance decides both: unscattered is d_s >= t (probability
        # exp(-t / L)), and d_s >= t + L ln(1 / R) has probability exp(-t / L) R exactly. Without
        # scattering, a uniform u < R does. One threshold per surface (PMT, black sheet) picked per photon
        # selects the reflected photons in one pass, never touching the others.
        r_pmt, r_sheet = physics.pmt_reflectivity, physics.wall_reflectivity
        reflect = max(r_pmt, r_sheet) > 0
        if scatter_cells is not None:  # R = 0: a threshold no scattering distance reaches
            at_sheet, at_pmt = (
                f32(-scatter_cells * np.log(r)) if r > 0 else f32(1e30) for r in (r_sheet, r_pmt)
            )
        else:  # compared with 16-bit uniforms
            at_sheet, at_pmt = f32(65536 * r_sheet), f32(65536 * r_pmt)
        for sign in (np.add, np.subtract):
            for k in range(4):
                dx = sign(cx, pvec[0, k])
                dy = sign(cy, pvec[1, k])
                dz = sign(cz, pvec[2, k])
                a = sign(a_even[k], a_odd[k])
                b = sign(b_even, b_odd[k])
                disc = b * b
                disc -= a * c
                np.sqrt(disc, out=disc)
                disc -= b
                t = disc
                t /= a
                t_cap = np.copysign(h_tank, dy)
                t_cap -= oy
                t_cap /= dy
                barrel = t < t_cap
                np.fmin(t, t_cap, out=t)
                fx = dx * t
                fx += fx0
                fy = dy * t
                fy += fy0
                fz = dz * t
                fz += fz0
                pmt = wall.candidates(fx, fy, fz, barrel, dy < 0)
                if scatter_cells is not None:
                    # Rayleigh scattering before the wall: the photon goes on from the scattering point.
                    d_s = np.take(tables.exp_quantiles, _random_u16(rng, nb))
                    d_s *= scatter_cells
                    sc = np.flatnonzero(d_s < t)
                    if len(sc):
                        pmt[sc] = -1
                        ds = d_s[sc]
                        scattered.append(
                            (
                                sc,
                                ox[sc] + dx[sc] * ds,
                                oy[sc] + dy[sc] * ds,
                                oz[sc] + dz[sc] * ds,
                                dx[sc],
                                dy[sc],
                                dz[sc],
                                ds,
                            )
                        )
                hit = pmt >= 0
                if reflect:
                    # Reflection where the photon meets the wall (not the scattered ones: they meet it
                    # elsewhere); one bounce, traced on from the wall point (fx, fy, fz - the offsets).
                    threshold = hit.astype(f32)  # at_sheet + hit (at_pmt - at_sheet): no branch
                    threshold *= at_pmt - at_sheet
                    threshold += at_sheet
                    if scatter_cells is not None:
                        threshold += t
                        rf = np.flatnonzero(d_s >= threshold)
                    else:
                        u_r = _random_u16(rng, nb)
                        rf = np.flatnonzero(u_r < threshold)
                    rf = rf[np.isfinite(np.take(t, rf))]
                    if len(rf):
                        reflected.append(
                            (
                                rf,
                                np.take(fx, rf) - f32(1.0 + r_tank),
                                np.take(fy, rf) - f32(1.0 + h_tank),
                                np.take(fz, rf) - f32(1.0 + r_tank),
                                np.take(barrel, rf),
                                np.take(hit, rf),
                                np.take(t, rf),
                            )
                        )
                on = np.flatnonzero(hit)
                lanes.append(
                    (on, np.take(pmt, on), np.take(dx, on), np.take(dy, on), np.take(dz, on), np.take(t, on))
                )
    if scattered:
        lanes.append(_trace_scattered(scattered, wall, rng))
    if reflected:
        lanes.append(_trace_reflected(reflected, tables, wall, rng))
    sample, pmt, dx_h, dy_h, dz_h, t_h = (np.concatenate(x) for x in zip(*lanes))
    pmt = pmt.astype(np.intp)
    pid = np.take(np.repeat(np.arange(sl.start, sl.stop, dtype=np.intp), bundles), sample)
    s_h = np.take(s, sample)

    # Survival: angular acceptance x attenuation x (muon) Frank-Tamm sin^2 weight.
    cos_inc = dx_h * np.take(wall.dir_x, pmt)
    cos_inc += dy_h * np.take(wall.dir_y, pmt)
    cos_inc += dz_h * np.take(wall.dir_z, pmt)
    np.negative(cos_inc, out=cos_inc)
    np.maximum(cos_inc, f32(0.0), out=cos_inc)
    power = physics.acceptance_power
    if power == 0.5:
        prob = np.sqrt(cos_inc)
    elif power == 1.0:
        prob = cos_inc
    else:
        prob = cos_inc ** f32(power)
    path = t_h * f32(wall.cell)
    n_h = len(sample)
    # Each photon's wavelength: one of the 1024 equal-probability bins of the detected spectrum, drawn once
    # for its absorption length and its group index.
    wavelength_bin = _random_u16(rng, n_h) >> 6
    if physics.attenuation_length is None:
        absorption = np.take(tables.inv_absorption, wavelength_bin)
        absorption *= path
        np.negative(absorption, out=absorption)
        prob *= np.exp(absorption)
    else:
        prob *= np.exp(path * f32(-1.0 / physics.attenuation_length))
    sn = np.take(weight, sample)
    sn *= np.take(src.inv_sin2max32, pid)
    prob *= sn
    u_acc = _random_u16(rng, n_h).astype(f32)
    u_acc += f32(0.5)
    u_acc *= f32(1.0 / 65536.0)
    keep = np.flatnonzero(u_acc < prob)
    pmt, pid, s_h, path, sample = pmt[keep], pid[keep], s_h[keep], path[keep], sample[keep]

    # Time: emission (particle at its speed: s (E0 + E) / ((p0 + p) c), exact for constant dE/dx)
    # + path / (c / n); the transit-time jitter is added per hit in _block_hits.
    t_hit = np.take(src.e0.astype(f32), pid) + np.take(energy, sample)
    t_hit /= np.take(src.p0.astype(f32), pid) + np.take(mom, sample)
    t_hit *= s_h * f32(1.0 / C_LIGHT)
    if physics.chromatic_dispersion:
        group = np.take(tables.group_delta, np.take(wavelength_bin, keep))
        group += f32(physics.group_index)
        group *= path
        group *= f32(1.0 / C_LIGHT)
        t_hit += group
    else:
        t_hit += path * f32(physics.group_index / C_LIGHT)
    t_hit += np.take(src.delay32, pid)
    return pid, pmt, t_hit


def rayleigh_cosines(u: np.ndarray) -> np.ndarray:
    """Cosines of Rayleigh scattering angles from uniform ``u``: the inverse of the CDF of
    p(mu) ~ 1 + mu^2, i.e. the real root of mu^3 + 3 mu - (8 u - 4) = 0 (Cardano)."""
    q = 8.0 * u - 4.0
    root = np.sqrt(q * q / 4.0 + 1.0)
    return np.cbrt(q / 2.0 + root) + np.cbrt(q / 2.0 - root)


def _trace_scattered(
    scattered: list[tuple[np.ndarray, ...]], wall: WallMap, rng: np.random.Generator
) -> tuple[np.ndarray, ...]:
    """Scattered photons (sample, point, old direction, path so far; wall-cell units) -> the lane tuple
    (sample, PMT, new direction, total path) of those reaching a PMT. The new direction follows
    Rayleigh's phase function 1 + cos^2 about the old one (inverse CDF: a cubic, solved by Cardano)."""
    f32 = np.float32
    sample, ox, oy, oz, dx, dy, dz, before = (np.concatenate(x) for x in zip(*scattered))
    u = rng.random((2, len(sample)), dtype=f32)
    new = _turn((dx, dy, dz), rayleigh_cosines(u[0]), f32(2.0 * np.pi) * u[1])
    return _to_wall(sample, (ox, oy, oz), new, before, wall)


def _trace_reflected(
    reflected: list[tuple[np.ndarray, ...]], tables: _Tables, wall: WallMap, rng: np.random.Generator
) -> tuple[np.ndarray, ...]:
    """Photons reflected where they met the wall (sample, wall point, on the barrel, on a PMT, path so far;
    wall-cell units) -> the lane tuple of those reaching a PMT."""
    f32 = np.float32
    sample, px, py, pz, barrel, on_pmt, before = (np.concatenate(x) for x in zip(*reflected))
    bits = _random_u16(rng, 2 * len(sample))
    dx, dy, dz = reflection_directions((px, py, pz), barrel, on_pmt, bits, tables)
    # start a hair inside the wall so the ray does not meet the surface it leaves
    start = (px + f32(1e-3) * dx, py + f32(1e-3) * dy, pz + f32(1e-3) * dz)
    return _to_wall(sample, start, (dx, dy, dz), before, wall)


def reflection_directions(
    point: tuple[np.ndarray, np.ndarray, np.ndarray],
    barrel: np.ndarray,
    on_pmt: np.ndarray,
    bits: np.ndarray,
    tables: _Tables,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Directions of photons reflected at wall points (float32, centred on the tank axis; ``barrel``: on
    the barrel, else a cap) from 2 random uint16 per photon: about the inward wall normal, uniform over the
    hemisphere off a PMT (specular reflection off a sphere spreads a beam isotropically), Lambertian
    (cos theta = sqrt(u)) off the black sheet."""
    f32 = np.float32
    px, py, pz = point
    n = len(px)
    u = (bits[:n].astype(f32) + f32(0.5)) * f32(1.0 / 65536.0)
    cos = _blend(on_pmt, u, np.sqrt(u))
    sin = np.sqrt(f32(1.0) - cos * cos)
    k = bits[n : 2 * n] >> 4
    a = np.take(tables.cos_phi, k) * sin
    b = np.take(tables.sin_phi, k) * sin
    # Inward normal and a frame around it: barrel n = -(ux, 0, uz) (u radial), e1 = y, e2 = (-uz, 0, ux);
    # caps n = (0, -sign(y), 0), e1 = x, e2 = z.
    radial = np.sqrt(px * px + pz * pz)
    radial[radial == 0] = f32(1.0)
    ux, uz = px / radial, pz / radial
    return (
        _blend(barrel, -(cos * ux) - b * uz, a),
        _blend(barrel, a, -np.sign(py) * cos),
        _blend(barrel, b * ux - cos * uz, b),
    )


def _blend(mask: np.ndarray, yes: np.ndarray, no: np.ndarray) -> np.ndarray:
    """``np.where(mask, yes, no)`` for finite float32 arrays as ``yes m + no (1 - m)``: exact (m is 0 or 1)
    and several times cheaper than ``np.where``'s branch per element when the mask is unpredictable."""
    m = mask.astype(np.float32)
    out = yes * m
    np.subtract(np.float32(1.0), m, out=m)
    m *= no
    out += m
    return out


def _turn(
    axis: tuple[np.ndarray, np.ndarray, np.ndarray], cos: np.ndarray, phi: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit directions at polar angle ``arccos(cos)`` and azimuth ``phi`` about the unit vectors ``axis``."""
    f32 = np.float32
    dx, dy, dz = axis
    sin = np.sqrt(np.maximum(f32(1.0) - cos * cos, f32(0.0)))
    # A frame (e1, e2) perpendicular to the axis d: e1 = d x a / |.|, a = x unless d ~ x (then a = y).
    along_x = np.abs(dx) > f32(0.9)
    ax, ay = np.where(along_x, f32(0.0), f32(1.0)), np.where(along_x, f32(1.0), f32(0.0))
    e1x, e1y, e1z = -dz * ay, dz * ax, dx * ay - dy * ax
    norm = np.sqrt(e1x * e1x + e1y * e1y + e1z * e1z)
    e1x, e1y, e1z = e1x / norm, e1y / norm, e1z / norm
    e2x, e2y, e2z = dy * e1z - dz * e1y, dz * e1x - dx * e1z, dx * e1y - dy * e1x
    c, s_ = sin * np.cos(phi), sin * np.sin(phi)
    return cos * dx + c * e1x + s_ * e2x, cos * dy + c * e1y + s_ * e2y, cos * dz + c * e1z + s_ * e2z


def _to_wall(
    sample: np.ndarray,
    origin: tuple[np.ndarray, ...],
    direction: tuple[np.ndarray, ...],
    before: np.ndarray,
    wall: WallMap,
) -> tuple[np.ndarray, ...]:
    """Rays from inside points (wall-cell units) to the cylinder wall -> the lane tuple (sample, PMT,
    direction, total path) of those that meet a PMT."""
    f32 = np.float32
    ox, oy, oz = origin
    nx, ny, nz = direction
    r_tank, h_tank = f32(wall.radius / wall.cell), f32(wall.half_height / wall.cell)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        a = nx * nx + nz * nz
        b = ox * nx + oz * nz
        cc = ox * ox + oz * oz - r_tank * r_tank
        t = (np.sqrt(np.maximum(b * b - a * cc, f32(0.0))) - b) / a
        t_cap = (np.copysign(h_tank, ny) - oy) / ny
        barrel = t < t_cap
        t = np.fmin(t, t_cap)
        pmt = wall.candidates(
            nx * t + ox + f32(1.0) + r_tank,
            ny * t + oy + f32(1.0) + h_tank,
            nz * t + oz + f32(1.0) + r_tank,
            barrel,
            ny < 0,
        )
    on = np.flatnonzero(pmt >= 0)
    return sample[on], pmt[on], nx[on], ny[on], nz[on], (before + t)[on]


# --------------------------------------------------------------------------------------------------
# Hits: one per (event, PMT), merged with dark noise


def _block_hits(
    ev_local: np.ndarray,
    pmt: np.ndarray,
    t_hit: np.ndarray,
    parent: np.ndarray,
    n_ev: int,
    n_pmts: int,
    physics: PhysicsConfig,
    pmt_model: PMTType,
    dark_rate: float,
    rng: np.random.Generator,
    dark_noise: bool,
) -> tuple[np.ndarray, ...]:
    """Photoelectrons -> hits (event, pmt, charge, time, parent) sorted by (event, PMT), and per event the
    trigger time (in the vertex frame) and whether the trigger fired.

    As WCSim digitises (digitizer.py): a hit's charge is the sum of its photoelectrons' draws from the PMT
    type's single-p.e. spectrum; its time is the earliest photon's plus the PMT's transit-time smear at that
    charge; the digitiser keeps it with the threshold's probability at that charge, adds 0.03 p.e. of
    Gaussian error and scales it by 0.985. Parent: the particle of the earliest photon. With the trigger,
    times become relative to the trigger time and signal hits outside the readout window are dropped. Dark
    photoelectrons (uniform in the window, at the dark rate times the PMT type's conversion factor) on a PMT
    with light add their charge and may make the time earlier; on a dark PMT they make a hit that must pass
    the threshold. One hit per PMT: light more than WCSim's 200 ns integration window after a PMT's first
    photon (decay electrons, dark noise) joins that hit instead of making a second one. Hits whose charge
    ends at or below 0 are dropped.
    """
    f32 = np.float32
    n_bins = n_ev * n_pmts
    key = ev_local * n_pmts + pmt
    count = np.bincount(key, minlength=n_bins)
    tmin = np.full(n_bins, np.inf, dtype=f32)
    np.minimum.at(tmin, key, t_hit)
    first_parent = np.full(n_bins, -1, dtype=np.int32)
    first = np.flatnonzero(t_hit == np.take(tmin, key))  # np.put/take: 2-3x cheaper than masks here
    np.put(first_parent, np.take(key, first), np.take(parent, first))
    signal = np.flatnonzero(count > 0)  # a bool mask: 5x cheaper than the nonzero entries of int64 counts
    spe = spe_charge_quantiles(pmt_model.spe)
    charge_sig = np.bincount(key, weights=np.take(spe, _random_u16(rng, len(key))), minlength=n_bins)
    charge_sig = charge_sig[signal].astype(f32)
    if physics.time_jitter is None:
        tmin[signal] += pmt_model.time_smear(charge_sig, rng).astype(f32)
    elif physics.time_jitter > 0:
        tmin[signal] += f32(physics.time_jitter) * rng.standard_normal(len(signal), dtype=f32)
    if physics.digitizer_threshold:  # before the trigger, which counts digitised hits
        kept = rng.random(len(signal)) < threshold_acceptance(charge_sig)
        tmin[signal[~kept]] = np.inf
        signal, charge_sig = signal[kept], charge_sig[kept]

    trigger_time = np.zeros(n_ev)
    triggered = np.ones(n_ev, dtype=bool)
    if physics.trigger:
        trigger_time, triggered = _trigger_times(signal // n_pmts, tmin[signal], n_ev, physics)
        tmin[signal] -= trigger_time[signal // n_pmts].astype(f32)
        w_lo, w_hi = physics.window_start, physics.window_start + physics.readout_window
        outside = signal[(tmin[signal] < w_lo) | (tmin[signal] >= w_hi)]
        if len(outside):
            tmin[outside] = np.inf
            inside = np.isfinite(tmin[signal])
            signal, charge_sig = signal[inside], charge_sig[inside]

    bins: np.ndarray
    charge_out: np.ndarray
    dark_pe_rate = dark_rate * (pmt_model.dark_conversion if physics.digitizer_threshold else 1.0)
    rate = n_pmts * dark_pe_rate * physics.readout_window * 1e-9
    if dark_noise and rate > 0:
        n_dark = rng.poisson(rate, n_ev)
        total = int(n_dark.sum())
        dark_key = np.repeat(np.arange(n_ev, dtype=np.intp) * n_pmts, n_dark)
        dark_key += rng.integers(0, n_pmts, total)
        dark_t = (physics.window_start + physics.readout_window * rng.random(total)).astype(f32)
        dark_q = np.take(spe, _random_u16(rng, total))
        if total:
            charge = np.zeros(n_bins, dtype=f32)
            charge[signal] = charge_sig
            is_signal = np.zeros(n_bins, dtype=bool)
            is_signal[signal] = True
            np.add.at(charge, dark_key, dark_q)
            np.minimum.at(tmin, dark_key, dark_t)
            bins = np.flatnonzero(tmin < np.inf)
            charge_out = charge[bins]
            if physics.digitizer_threshold:
                dark_only = np.flatnonzero(~is_signal[bins])
                dropped = dark_only[rng.random(len(dark_only)) >= threshold_acceptance(charge_out[dark_only])]
                if len(dropped):
                    keep = np.ones(len(bins), dtype=bool)
                    keep[dropped] = False
                    bins, charge_out = bins[keep], charge_out[keep]
        else:
            bins, charge_out = signal, charge_sig
    else:
        bins, charge_out = signal, charge_sig
    if physics.digitizer_threshold:
        charge_out = charge_out + f32(THRESHOLD_CHARGE_ERROR) * rng.standard_normal(len(bins), dtype=f32)
        charge_out *= f32(CHARGE_SCALE)
    # A kept hit's charge can end at or below 0 (a near-zero single-p.e. draw plus its 0.03 p.e. error;
    # none in 48,000 Hyper-K hits): it records nothing and is dropped, so every hit has charge > 0.
    if not (charge_out > 0).all():
        positive = charge_out > 0
        bins, charge_out = bins[positive], charge_out[positive]
    return (
        bins // n_pmts,
        (bins % n_pmts).astype(np.int32),
        charge_out.astype(f32, copy=False),
        tmin[bins],
        first_parent[bins],
        trigger_time,
        triggered,
    )


def _trigger_times(
    event: np.ndarray, time: np.ndarray, n_ev: int, physics: PhysicsConfig
) -> tuple[np.ndarray, np.ndarray]:
    """Per event, the time the ``trigger_hits``-th hit within ``trigger_window`` ns arrives (WCSim's NDigits
    trigger) and whether that happened; events that never trigger use their first hit (0 without hits)."""
    # Sort by (event, time) with one float64 key: events are whole multiples of a span longer than any
    # time difference, so the key orders exactly as a lexsort would (2-3x cheaper), up to ties.
    t64 = time.astype(np.float64)
    span = float(t64.max() - t64.min()) + 1.0 if len(t64) else 1.0
    key = event * span
    key += t64
    order = np.argsort(key)
    ev, t = event[order], t64[order]
    n = physics.trigger_hits - 1
    trig = np.full(n_ev, np.inf)
    if len(ev) > n:
        ok = (ev[n:] == ev[:-n] if n else np.ones(len(ev), bool)) & (
            t[n:] - t[: len(t) - n] <= physics.trigger_window
        )
        np.minimum.at(trig, ev[n:][ok], t[n:][ok])
    triggered = np.isfinite(trig)
    first = np.full(n_ev, np.inf)
    np.minimum.at(first, ev, t)
    trig = np.where(triggered, trig, np.where(np.isfinite(first), first, 0.0))
    return trig, triggered


def simulate_particles(
    detector: WCDetector,
    kinds: Sequence[str],
    energies: np.ndarray,
    vertices: np.ndarray,
    directions: np.ndarray,
    rng: np.random.Generator,
    physics: PhysicsConfig = PhysicsConfig(),
    *,
    event: np.ndarray | None = None,
    n_events: int | None = None,
    dark_noise: bool = True,
) -> dict[str, np.ndarray]:
    """Simulate given particles (kinetic energies in MeV, vertices in cm, directions) and return hits.

    Each particle is its own event unless ``event`` (particle -> event index) groups them; ``pi0`` is
    decayed here. ``hit_parent`` is the index (within its event, pi0 counting as its two gammas) of the
    particle whose photon arrived first, or -1 for pure dark noise. Returns ``event_hits_index`` (int64
    offsets), ``hit_pmt`` (int32), ``hit_charge`` (float32 p.e.), ``hit_time`` (float32 ns),
    ``hit_parent`` (int32); hits of an event are sorted by PMT. Per event: ``vertex_times`` (ns, the
    particles' start relative to the trigger; 0 without trigger) and ``triggered``.
    """
    src = _make_sources(detector, kinds, energies, vertices, directions, rng, physics, event)
    if n_events is None:
        n_events = int(src.event.max()) + 1 if len(src.event) else 0
    if len(src.event) and (src.event.min() < 0 or src.event.max() >= n_events):
        raise ConfigError(f"event indices must lie in [0, {n_events})")
    wall = wall_map(detector, physics.collection_radius(detector))
    tables = _tables(physics)
    n_pmts = detector.n_pmts
    counts = rng.poisson(src.mean_photons / BUNDLE)  # bundles of BUNDLE photons

    # Blocks of whole events with about BLOCK_PHOTONS photons each.
    per_event = np.bincount(src.event, weights=counts, minlength=n_events)
    before = np.concatenate([[0.0], np.cumsum(per_event)[:-1]])
    block_of_event = (before // (BLOCK_PHOTONS // BUNDLE)).astype(np.int64)
    edges = np.flatnonzero(np.diff(block_of_event, prepend=-1)) if n_events else np.zeros(0, np.int64)
    edges = np.append(edges, n_events)
    part_edges = np.searchsorted(src.event, edges)

    w_lo, w_hi = physics.window_start, physics.window_start + physics.readout_window
    pmt_model, dark_rate = physics.pmt(detector), physics.dark_rate_of(detector)
    trigger_time, triggered = np.zeros(n_events), np.ones(n_events, dtype=bool)
    out: list[tuple[np.ndarray, ...]] = []
    for b in range(len(edges) - 1):
        e_lo, e_hi = int(edges[b]), int(edges[b + 1])
        p_lo, p_hi = int(part_edges[b]), int(part_edges[b + 1])
        pid, pmt, t_hit = _trace_block(src, slice(p_lo, p_hi), counts[p_lo:p_hi], wall, tables, physics, rng)
        if not physics.trigger:  # the window is in the vertex frame: cut photons now
            inside = (t_hit >= w_lo) & (t_hit < w_hi)
            pid, pmt, t_hit = pid[inside], pmt[inside], t_hit[inside]
        ev, hp, hq, ht, hpar, trig, fired = _block_hits(
            src.event[pid] - e_lo,
            pmt,
            t_hit,
            src.parent[pid],
            e_hi - e_lo,
            n_pmts,
            physics,
            pmt_model,
            dark_rate,
            rng,
            dark_noise,
        )
        trigger_time[e_lo:e_hi], triggered[e_lo:e_hi] = trig, fired
        out.append((ev + e_lo, hp, hq, ht, hpar))
    if out:
        ev, hp, hq, ht, hpar = (np.concatenate(x) for x in zip(*out))
    else:
        ev = np.zeros(0, np.int64)
        hp, hpar = np.zeros(0, np.int32), np.zeros(0, np.int32)
        hq, ht = np.zeros(0, np.float32), np.zeros(0, np.float32)
    n_hits = np.bincount(ev, minlength=n_events)
    offsets = np.zeros(n_events, dtype=np.int64)
    if n_events:
        np.cumsum(n_hits[:-1], out=offsets[1:])
    return {
        "event_hits_index": offsets,
        "hit_pmt": hp.astype(np.int32, copy=False),
        "hit_charge": hq.astype(np.float32, copy=False),
        "hit_time": ht.astype(np.float32, copy=False),
        "hit_parent": hpar.astype(np.int32, copy=False),
        "vertex_times": (-trigger_time).astype(np.float32),
        "triggered": triggered,
    }


# --------------------------------------------------------------------------------------------------
# Events: random particles, chunks, workers


def _simulate_chunk(
    detector: WCDetector,
    start_event: int,
    n: int,
    particles: tuple[str, ...],
    energy_range: tuple[float, float],
    fiducial_margin: float,
    physics: PhysicsConfig,
    seed: int,
) -> dict[str, np.ndarray]:
    """Events ``start_event .. start_event + n``; the chunk's random stream depends only on (seed, start)."""
    rng = np.random.default_rng([seed, start_event])
    pick = rng.integers(0, len(particles), n)
    kinds = [particles[i] for i in pick]
    energies = rng.uniform(energy_range[0], energy_range[1], n)
    vertices = uniform_cylinder_points(
        n, detector.radius - fiducial_margin, detector.half_height - fiducial_margin, rng
    )
    directions = isotropic_directions(n, rng)
    hits = simulate_particles(
        detector, kinds, energies, vertices, directions, rng, physics, event=np.arange(n), n_events=n
    )
    hits["labels"] = np.array([PARTICLES[k].label for k in kinds], dtype=np.int32)
    hits["energies"] = energies.astype(np.float32)[:, None]
    mass = np.array([PARTICLES[k].mass for k in kinds])
    hits["total_energies"] = (energies + mass).astype(np.float32)[:, None]
    hits["momenta"] = np.sqrt(energies * (energies + 2 * mass)).astype(np.float32)[:, None]
    hits["triggered"] = hits["triggered"].astype(np.int8)
    hits["positions"] = vertices.astype(np.float32)[:, None, :]
    hits["directions"] = directions.astype(np.float32)[:, None, :]
    hits["angles"] = directions_to_angles(directions).astype(np.float32)
    hits["event_ids"] = np.arange(start_event, start_event + n, dtype=np.int32)
    return hits


_WORKER_DETECTOR: WCDetector | None = None


def _init_worker(detector: WCDetector, wall: WallMap, physics: PhysicsConfig) -> None:
    """Receive the detector (and its prebuilt wall map) once per worker process."""
    global _WORKER_DETECTOR
    _WORKER_DETECTOR = detector
    wall_module._CACHE.setdefault(detector, {})[physics.collection_radius(detector)] = wall


def _worker_chunk(*args: object) -> dict[str, np.ndarray]:
    assert _WORKER_DETECTOR is not None, "worker not initialised"
    return _simulate_chunk(_WORKER_DETECTOR, *args)  # type: ignore[arg-type]


def _concatenate(chunks: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    shift = 0
    offsets = []
    for ch in chunks:
        offsets.append(ch["event_hits_index"] + shift)
        shift += len(ch["hit_pmt"])
    out["event_hits_index"] = np.concatenate(offsets) if offsets else np.zeros(0, np.int64)
    for key in chunks[0]:
        if key != "event_hits_index":
            out[key] = np.concatenate([ch[key] for ch in chunks])
    return out


def simulate(
    detector: WCDetector,
    n_events: int,
    *,
    particles: Sequence[str] = ("e-", "mu-", "gamma"),
    energy_range: Sequence[float] = (100.0, 1000.0),
    fiducial_margin: float = 50.0,
    physics: PhysicsConfig = PhysicsConfig(),
    seed: int = 0,
    first_event: int = 0,
    n_workers: int = 1,
    chunk_size: int = 1000,
) -> dict[str, np.ndarray]:
    """Simulate ``n_events`` single-particle events and return the event-store arrays.

    Each event picks a particle uniformly among ``particles``, a *kinetic* energy uniform in
    ``energy_range`` (MeV; stored in ``energies``), a vertex uniform in the tank shrunk by
    ``fiducial_margin`` cm from every wall and an isotropic direction. Events are made in chunks of
    ``chunk_size``; the chunk starting at event id ``e`` draws from ``default_rng([seed, e])``, so the
    output is identical whatever ``n_workers`` is, and a production split into jobs by ``first_event``
    (at multiples of ``chunk_size``) reproduces the same events.
    """
    particles = tuple(check_particles(particles))
    if n_events < 0:
        raise ConfigError(f"n_events must be >= 0, got {n_events}")
    if chunk_size < 1:
        raise ConfigError(f"chunk_size must be >= 1, got {chunk_size}")
    if seed < 0 or first_event < 0:
        raise ConfigError(f"seed and first_event must be >= 0, got {seed} and {first_event}")
    lo, hi = (float(x) for x in energy_range)
    if not 0.0 <= lo <= hi:
        raise ConfigError(f"energy_range must be (low, high) with 0 <= low <= high MeV, got {energy_range}")
    if not 0.0 <= fiducial_margin < min(detector.radius, detector.half_height):
        raise ConfigError(
            f"fiducial_margin {fiducial_margin} cm leaves no fiducial volume in detector {detector.name}"
        )
    starts = list(range(0, n_events, chunk_size))
    args = [
        (first_event + s, min(chunk_size, n_events - s), particles, (lo, hi), fiducial_margin, physics, seed)
        for s in starts
    ]
    if not args:
        return _simulate_chunk(detector, first_event, 0, particles, (lo, hi), fiducial_margin, physics, seed)
    wall = wall_map(detector, physics.collection_radius(detector))
    if n_workers <= 1 or len(args) == 1:
        chunks = [_simulate_chunk(detector, *a) for a in args]
    else:
        ctx = mp.get_context("spawn")
        with cf.ProcessPoolExecutor(
            max_workers=min(n_workers, len(args)),
            mp_context=ctx,
            initializer=_init_worker,
            initargs=(detector, wall, physics),
        ) as pool:
            chunks = list(pool.map(_worker_chunk, *zip(*args)))
    return _concatenate(chunks)
