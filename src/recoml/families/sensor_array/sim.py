"""Toy events for any sensor array in sea water: muon tracks crossing the array and electron showers
inside it, Cherenkov light attenuated on its way to each sensor, K40/dark-noise hits.

Physics (cm, ns, MeV; every number in :class:`SeaWaterConfig`):

* **Cherenkov light.** A relativistic charged particle emits at cos(theta_c) = 1 / (n beta) with the
  phase index of sea water n = 1.35 (theta_c = 42.2 deg); photons travel at c / n_g with the group index
  n_g = 1.38 (both at ~450 nm). A muon track yields ``track_photons`` detectable photons per cm
  (Frank-Tamm over 300-600 nm, ~300 photons/cm, times a photocathode efficiency), scaled up by
  ``1 + E / muon_critical_energy`` for the radiative losses that grow with energy. The expected number of
  photo-electrons on a sensor at perpendicular distance d from the track is
  ``N * A_eff / (2 pi d sin theta_c) * exp(-L / lambda_att) * acceptance``, where L = d / sin(theta_c) is
  the photon path and ``acceptance`` the sensor's angular response max(0, cos eta) (eta the angle
  between the sensor's facing direction and the incoming photon). Arrival time: the time the muon
  reaches the emission point plus L n_g / c.
* **Showers** (e-, gamma: electromagnetic showers look alike at these energies) are point sources
  at the vertex emitting ``shower_photons_per_mev * E`` photons,
  mostly near theta_c (a Gaussian of width ``shower_angular_width`` in angle plus an isotropic part),
  spread over 4 pi L^2.
* **Sea water.** Absorption length 60 m and effective scattering length 265 m at 466 nm, measured at the
  ANTARES site (J.A. Aguilar et al., "Transmission of light in deep sea water at the site of the ANTARES
  neutrino telescope", Astropart. Phys. 23 (2005) 131); scattered photons count as lost (no delayed
  light), so lambda_att = 1 / (1/60 m + 1/265 m) = 48.9 m.
* **Noise.** K40 decays and dark counts at ``noise_rate`` per sensor (7 kHz, KM3NeT's typical 3-inch PMT
  rate) uniform over the readout window; their ``hit_parent`` is -1.
* **Time resolution.** Transit-time spread ``tts`` (Gaussian) per hit.

Muons start outside the array and cross it along a straight line through a random point of the
array's bounding box shrunk by ``fiducial_margin``; the stored position is that point. Showers start at
a uniform point in the same box. Directions are isotropic. Energies are kinetic, MeV; hit times start
at the interaction (``time_origin=vertex``). Events are reproducible from (seed, event id) alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recoml.data.simulated import toy_attrs, write_simulation
from recoml.errors import ConfigError

C_CM_PER_NS = 29.9792458
PARTICLES = {"gamma": 0, "e-": 1, "mu-": 2}  # recoml labels; gamma and e- both make showers here


@dataclass(frozen=True)
class SeaWaterConfig:
    """Every number of the sensor-array toy (cm, ns, MeV)."""

    refractive_index: float = 1.35
    group_index: float = 1.38
    absorption_length: float = 6000.0  # cm, ANTARES site at 466 nm (Aguilar et al. 2005)
    scattering_length: float = 26500.0  # cm, effective scattering length, same reference
    track_photons: float = 30.0  # detectable photons per cm of muon track (~300/cm x 10% efficiency)
    muon_critical_energy: float = 5.0e5  # MeV: radiative losses double the light at this energy
    shower_photons_per_mev: float = 10.0  # detectable photons per MeV of shower energy
    shower_angular_width: float = 0.35  # rad
    shower_isotropic: float = 0.05  # fraction of shower light emitted isotropically
    noise_rate: float = 7.0e-6  # hits per ns per sensor (7 kHz)
    readout_window: float = 3000.0  # ns
    tts: float = 2.0  # ns

    @property
    def attenuation_length(self) -> float:
        return 1.0 / (1.0 / self.absorption_length + 1.0 / self.scattering_length)

    @property
    def cherenkov_angle(self) -> float:
        return math.acos(1.0 / self.refractive_index)


def _isotropic(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _event(
    detector: Any,
    rng: np.random.Generator,
    particle: str,
    energy: float,
    vertex: np.ndarray,
    direction: np.ndarray,
    phys: SeaWaterConfig,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expected photo-electrons and arrival times at every sensor for one particle."""
    pos = detector.sensor_positions.astype(np.float64)
    facing = detector.sensor_directions.astype(np.float64)
    area = math.pi * detector.pmt_radius**2
    att = phys.attenuation_length
    theta = phys.cherenkov_angle
    v_light = C_CM_PER_NS / phys.group_index
    rel = pos - vertex
    if particle == "mu-":
        along = rel @ direction  # position of the closest approach along the track
        perp = rel - along[:, None] * direction
        d = np.maximum(np.linalg.norm(perp, axis=1), 10.0)
        path = d / math.sin(theta)
        emit = along - d / math.tan(theta)  # where the photon reaching the sensor was emitted
        photon = (rel - emit[:, None] * direction) / path[:, None]  # unit photon direction
        yield_cm = phys.track_photons * (1.0 + energy / phys.muon_critical_energy)
        mu = yield_cm * area / (2 * math.pi * d * math.sin(theta)) * np.exp(-path / att)
        t = emit / C_CM_PER_NS + path / v_light
    else:
        path = np.maximum(np.linalg.norm(rel, axis=1), 10.0)
        photon = rel / path[:, None]
        cos_a = np.clip(photon @ direction, -1.0, 1.0)
        gauss = np.exp(-0.5 * ((np.arccos(cos_a) - theta) / phys.shower_angular_width) ** 2)
        norm = 2 * math.pi * phys.shower_angular_width * math.sqrt(2 * math.pi) * math.sin(theta)
        profile = (1 - phys.shower_isotropic) * gauss / norm + phys.shower_isotropic / (4 * math.pi)
        mu = phys.shower_photons_per_mev * energy * profile * area / path**2 * np.exp(-path / att)
        t = path / v_light
    acceptance = np.clip(-(photon * facing).sum(axis=1), 0.0, None)
    return mu * acceptance, t, np.full(len(pos), 0, dtype=np.int32)


def simulate_events(
    detector: Any,
    n_events: int,
    *,
    particles: Sequence[str] = ("e-", "mu-"),
    energy_range: Sequence[float] = (1.0e4, 1.0e6),
    fiducial_margin: float = 0.0,
    physics: SeaWaterConfig | None = None,
    seed: int = 0,
    first_event: int = 0,
) -> dict[str, np.ndarray]:
    """``n_events`` events (ids ``first_event`` ...) as store arrays; each event is seeded by (seed, id)."""
    phys = physics or SeaWaterConfig()
    unknown = [p for p in particles if p not in PARTICLES]
    if unknown:
        raise ConfigError(
            f"sensor-array toy: particles {unknown} are not simulated; choose from {list(PARTICLES)}"
        )
    lo_e, hi_e = float(energy_range[0]), float(energy_range[1])
    lo = detector.centre - np.maximum(detector.half_extent - fiducial_margin, 1.0)
    hi = detector.centre + np.maximum(detector.half_extent - fiducial_margin, 1.0)
    out: dict[str, list[Any]] = {k: [] for k in ("pmt", "charge", "time", "parent", "counts")}
    labels, energies, vertices, dirs = [], [], [], []
    n_sensors = detector.n_sensors
    for event in range(first_event, first_event + n_events):
        rng = np.random.default_rng([seed, event])
        particle = particles[int(rng.integers(len(particles)))]
        energy = float(np.exp(rng.uniform(math.log(lo_e), math.log(hi_e))))  # flat in log E
        vertex = rng.uniform(lo, hi)
        direction = _isotropic(rng, 1)[0]
        mu, t, _ = _event(detector, rng, particle, energy, vertex, direction, phys)
        n_pe = rng.poisson(mu)
        hit = np.flatnonzero(n_pe > 0)
        times = t[hit] + rng.normal(0.0, phys.tts, len(hit))
        charges = n_pe[hit] * rng.normal(1.0, 0.3, len(hit)).clip(0.2)
        n_noise = rng.poisson(phys.noise_rate * phys.readout_window * n_sensors)
        noise_pmt = rng.integers(0, n_sensors, n_noise)
        t0 = times.min() if len(times) else 0.0
        noise_t = t0 - phys.readout_window / 3 + rng.uniform(0, phys.readout_window, n_noise)
        pmt = np.concatenate([hit, noise_pmt]).astype(np.int32)
        order = np.argsort(pmt, kind="stable")
        out["pmt"].append(pmt[order])
        out["charge"].append(np.concatenate([charges, rng.normal(1.0, 0.3, n_noise).clip(0.2)])[order])
        out["time"].append(np.concatenate([times, noise_t])[order])
        out["parent"].append(np.concatenate([np.zeros(len(hit)), -np.ones(n_noise)])[order])
        out["counts"].append(len(pmt))
        labels.append(PARTICLES[particle])
        energies.append(energy)
        vertices.append(vertex)
        dirs.append(direction)
    counts = np.asarray(out["counts"], dtype=np.int64)
    d = np.asarray(dirs, dtype=np.float64).reshape(-1, 3)
    return {
        "event_hits_index": np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64),
        "hit_pmt": np.concatenate(out["pmt"]).astype(np.int32),
        "hit_charge": np.concatenate(out["charge"]).astype(np.float32),
        "hit_time": np.concatenate(out["time"]).astype(np.float32),
        "hit_parent": np.concatenate(out["parent"]).astype(np.int32),
        "labels": np.asarray(labels, dtype=np.int32),
        "energies": np.asarray(energies, dtype=np.float32)[:, None],
        "positions": np.asarray(vertices, dtype=np.float32)[:, None, :],
        "directions": d.astype(np.float32)[:, None, :],
        "angles": np.stack([np.arccos(np.clip(d[:, 1], -1, 1)), np.arctan2(d[:, 2], d[:, 0])], 1).astype(
            np.float32
        ),
        "event_ids": np.arange(first_event, first_event + n_events, dtype=np.int32),
    }


def simulate_to_store(
    detector: Any,
    output: str | Path,
    *,
    n_events: int,
    particles: Sequence[str] = ("e-", "mu-"),
    energy_range: Sequence[float] = (1.0e4, 1.0e6),
    fiducial_margin: float = 0.0,
    seed: int = 0,
    chunk_size: int = 1000,
    physics: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
    **store: Any,
) -> tuple[Path, Path]:
    """Simulate into an event store with a split file through the writer every toy generator shares;
    ``store`` holds its options (``split_path``, ``fractions``, ``split_seed``, ``overwrite``).
    ``n_workers`` is accepted for the common simulate interface; events are made in this process."""

    phys = SeaWaterConfig(**(physics or {}))
    settings = {
        "generator": "recoml sensor-array toy (sea water)",
        "particles": list(particles),
        "energy_range": list(energy_range),
        "fiducial_margin": fiducial_margin,
        "seed": seed,
        "physics": asdict(phys),
    }
    attrs = toy_attrs(detector, settings, config)

    def block(start: int, count: int) -> dict[str, Any]:
        return simulate_events(
            detector,
            count,
            particles=particles,
            energy_range=energy_range,
            fiducial_margin=fiducial_margin,
            physics=phys,
            seed=seed,
            first_event=start,
        )

    return write_simulation(
        Path(output),
        block,
        n_events=n_events,
        block_size=max(1, chunk_size),
        attrs=attrs,
        name=detector.name,
        split_path=store.get("split_path"),
        fractions=store.get("fractions", (0.8, 0.1, 0.1)),
        split_seed=store.get("split_seed", 0),
        overwrite=store.get("overwrite", False),
    )
