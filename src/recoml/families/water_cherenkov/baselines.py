"""Classical reconstruction of water-Cherenkov events: the baselines a network must beat (docs/physics.md).

Per event, from its hits alone (no truth):

* **vertex** and vertex time: the time-of-flight fit :func:`~.validation.tof_vertex_fit`;
* **direction**: :func:`charge_direction`, the charge-weighted mean of the unit vectors from the *fitted*
  vertex to the PMTs of the prompt hits (time residual within :data:`DIRECTION_WINDOW`); a Cherenkov ring
  is a cone about the track, so the mean of its unit vectors points along the cone's axis;
* **energy**: kinetic energy ``T = a Q + b`` from the total charge ``Q``, ``(a, b)`` fitted per true
  species on calibration events (:func:`fit_charge_energy`): the fitted hypothesis is the true one, as in
  the per-species resolutions WatChMaL and Hyper-K publish;
* **e/mu**: the fraction of the prompt charge more than :data:`RING_MARGIN` degrees outside the Cherenkov
  angle (seen from the fitted vertex about the fitted direction): electron showers scatter light off the
  ring, muon rings are sharp; turned into ``P(e)`` by a one-variable linear discriminant fitted on the
  calibration events (:func:`fit_discriminant`). It does not separate e from gamma (both showers): a gamma
  gets probability 0, so its e/gamma curve is chance.

:func:`write_classical_predictions` writes these, for the events of a recoml predictions file, into a
predictions file of the same layout, so ``recoml evaluate predictions=[<ml run>,<classical file>]`` scores
both with the same definitions on the same events.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from recoml.data.store import EventStore, open_store, write_store
from recoml.errors import DataError
from recoml.evaluation.displays import detector_for
from recoml.families.water_cherenkov.simulation import C_LIGHT
from recoml.families.water_cherenkov.validation import tof_vertex_fit
from recoml.prediction.reader import Predictions

log = logging.getLogger(__name__)

__all__ = [
    "charge_direction",
    "event_features",
    "fit_charge_energy",
    "fit_discriminant",
    "write_classical_predictions",
]

#: Time residuals (ns, relative to the fitted vertex time) of the hits the direction and e/mu use.
DIRECTION_WINDOW = (-3.0, 10.0)
#: Degrees beyond the Cherenkov angle from which prompt charge counts as off the ring (e/mu feature).
RING_MARGIN = 8.0
#: Stored labels (gamma 0, e 1, mu 2) the e/mu discriminant separates.
ELECTRON, MUON = 1, 2
MODEL = "classical (ToF vertex fit, charge-weighted direction, charge-sum energy, ring-sharpness e/mu)"


def charge_direction(pmt_positions: np.ndarray, charges: np.ndarray, vertex: np.ndarray) -> np.ndarray:
    """Unit vector along ``sum_i q_i u_i``, ``u_i`` the unit vector from ``vertex`` to PMT ``i`` (cm)."""
    rel = np.asarray(pmt_positions, dtype=np.float64) - np.asarray(vertex, dtype=np.float64)
    dist = np.linalg.norm(rel, axis=1, keepdims=True)
    total = (np.asarray(charges, dtype=np.float64)[:, None] * rel / np.where(dist > 0, dist, 1.0)).sum(0)
    norm = np.linalg.norm(total)
    if not norm > 0:
        raise DataError("charge_direction: the hits' charge-weighted unit vectors sum to zero; no direction")
    return total / norm


def event_features(
    pmt_positions: np.ndarray,
    times: np.ndarray,
    charges: np.ndarray,
    group_index: float = 1.38,
    refractive_index: float = 1.33,
    bounds: tuple[np.ndarray, np.ndarray] | None = None,
    known_vertex: tuple[np.ndarray, float] | None = None,
) -> dict[str, Any]:
    """The classical fit of one event: ``vertex`` (cm), ``vertex_time`` (ns), ``direction`` (unit),
    ``charge`` (total p.e.) and ``off_ring_fraction`` (the e/mu feature of the module docstring).
    ``known_vertex`` ``(vertex, time)`` replaces the time-of-flight fit (the true vertex: an upper bound of
    what the direction and e/mu can reach from a perfect vertex fit)."""
    pos = np.asarray(pmt_positions, dtype=np.float64)
    q = np.asarray(charges, dtype=np.float64)
    if known_vertex is None:
        vertex, t0 = tof_vertex_fit(pos, times, q, group_index, bounds)
    else:
        vertex, t0 = np.asarray(known_vertex[0], dtype=np.float64).reshape(3), float(known_vertex[1])
    rel = pos - vertex
    dist = np.linalg.norm(rel, axis=1)
    residual = np.asarray(times, dtype=np.float64) - t0 - dist * group_index / C_LIGHT
    prompt = (residual >= DIRECTION_WINDOW[0]) & (residual <= DIRECTION_WINDOW[1])
    if not np.any(q[prompt] > 0):
        prompt = np.ones(len(q), dtype=bool)
    direction = charge_direction(pos[prompt], q[prompt], vertex)
    cos = np.sum(rel[prompt] * direction, axis=1) / np.where(dist[prompt] > 0, dist[prompt], 1.0)
    angle = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
    cherenkov = np.degrees(np.arccos(1.0 / refractive_index))
    qp = q[prompt]
    off_ring = float(qp[angle > cherenkov + RING_MARGIN].sum() / qp.sum())
    return {
        "vertex": vertex,
        "vertex_time": t0,
        "direction": direction,
        "charge": float(q.sum()),
        "off_ring_fraction": off_ring,
    }


def fit_charge_energy(
    charge: np.ndarray, energy: np.ndarray, labels: np.ndarray
) -> dict[int, tuple[float, float]]:
    """Least-squares ``energy = a charge + b`` per label: ``{label: (a, b)}`` (needs 2 events per label)."""
    out = {}
    for label in np.unique(labels):
        sel = labels == label
        if sel.sum() < 2:
            raise DataError(f"fit_charge_energy: label {int(label)} has {int(sel.sum())} events; need >= 2")
        a, b = np.polyfit(np.asarray(charge, dtype=np.float64)[sel], np.asarray(energy)[sel], 1)
        out[int(label)] = (float(a), float(b))
    return out


def fit_discriminant(feature: np.ndarray, signal: np.ndarray) -> tuple[float, float]:
    """One-variable linear discriminant (equal-variance Gaussians, equal priors): ``(w, c)`` such that
    ``P(signal | x) = 1 / (1 + exp(-(w x + c)))``, with ``w = (m_s - m_b) / s^2`` and ``c = -w (m_s +
    m_b) / 2`` (``s^2`` the pooled variance)."""
    x, sig = np.asarray(feature, dtype=np.float64), np.asarray(signal, dtype=bool)
    if sig.sum() < 2 or (~sig).sum() < 2:
        raise DataError("fit_discriminant: need at least 2 signal and 2 background events")
    ms, mb = x[sig].mean(), x[~sig].mean()
    var = (((x[sig] - ms) ** 2).sum() + ((x[~sig] - mb) ** 2).sum()) / (len(x) - 2)
    w = (ms - mb) / max(var, 1e-12)
    return float(w), float(-w * (ms + mb) / 2)


#: Hits an event needs for the time-of-flight fit; with fewer (gammas that leave the tank unconverted, no
#: trigger) the baselines answer the tank centre, time 0 and the charge-weighted direction seen from it.
MIN_FIT_HITS = 5


def fit_store_events(
    store: EventStore,
    rows: np.ndarray,
    pmt_positions: np.ndarray,
    physics: Mapping[str, Any],
    true_vertex: bool = False,
) -> dict[str, np.ndarray]:
    """:func:`event_features` of the store's events ``rows``, stacked (``vertex (N, 3)`` ...), plus
    ``fitted`` (False for events with fewer than :data:`MIN_FIT_HITS` hits, see there). ``true_vertex``:
    from the stored true vertex and vertex time instead of the time-of-flight fit."""
    truth = ("positions", "vertex_times") if true_vertex else ()
    flat, offsets, events = store.read(rows, ["hit_pmt", "hit_time", "hit_charge"], truth)
    group_index = float(physics.get("group_index", 1.38))
    refractive_index = float(physics.get("refractive_index", 1.33))
    tank = (pmt_positions.min(axis=0).astype(np.float64), pmt_positions.max(axis=0).astype(np.float64))
    centre = 0.5 * (tank[0] + tank[1])
    fits = []
    for i in range(len(rows)):
        sl = slice(offsets[i], offsets[i + 1])
        pos, q = pmt_positions[flat["hit_pmt"][sl]], flat["hit_charge"][sl]
        known = (events["positions"][i], events["vertex_times"][i]) if true_vertex else None
        if len(q) >= MIN_FIT_HITS:
            fit = event_features(pos, flat["hit_time"][sl], q, group_index, refractive_index, tank, known)
            fit["fitted"] = True
        else:
            has_charge = len(q) and q.sum() > 0 and np.any(np.linalg.norm(pos - centre, axis=1) > 0)
            direction = charge_direction(pos, q, centre) if has_charge else np.array([0.0, 0.0, 1.0])
            fit = {
                "vertex": centre.astype(np.float64),
                "vertex_time": 0.0,
                "direction": direction,
                "charge": float(np.sum(q)),
                "off_ring_fraction": 0.0,
                "fitted": False,
            }
        fits.append(fit)
    return {k: np.array([f[k] for f in fits]) for k in fits[0]} if fits else {}


def _calibration_rows(store: EventStore, predicted: np.ndarray, n: int, seed: int) -> np.ndarray:
    """``n`` random store rows outside the predicted events (sorted), for the energy and e/mu fits."""
    free = np.setdiff1d(np.arange(store.n_events), predicted)
    if len(free) < 4:
        raise DataError(
            f"{store.path}: only {len(free)} events lie outside the predicted ones; the classical energy and "
            "e/mu calibration needs events that are not evaluated (predict a split, not split=all)"
        )
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(free, size=min(n, len(free)), replace=False))


def _classification_section(reference: Predictions) -> dict[str, Any]:
    """The reference's classification section (class names and stored label values), or gamma/e/mu."""
    found = next((s for s in reference.sections if s["kind"] == "classification"), None)
    names = list(found["class_names"]) if found else ["gamma", "e", "mu"]
    values = list(found.get("label_values") or range(len(names))) if found else [0, ELECTRON, MUON]
    pairs = found.get("pairs") if found else [["e", "mu"], ["e", "gamma"]]
    return {
        "name": "pid",
        "kind": "classification",
        "prefix": "pid.",
        "class_names": names,
        "label_values": values,
        "pairs": pairs,
    }


def write_classical_predictions(
    reference: str | os.PathLike,
    output: str | os.PathLike,
    n_calibration: int = 1000,
    seed: int = 0,
    overwrite: bool = False,
    true_vertex: bool = False,
) -> Path:
    """The classical baselines of the module docstring on the events of the recoml predictions file
    ``reference`` (read from the event store it was predicted from), written to ``output`` as a predictions
    file with sections ``energy`` (kinetic, MeV), ``vertex``, ``direction`` and ``pid`` (when the classes
    include e and mu) and the reference's truth and ``events_digest``. Calibration: ``n_calibration``
    store events outside the reference's (the training and validation splits of a test prediction).
    ``true_vertex``: direction and e/mu from the true vertex and vertex time (an upper bound, no vertex
    section: the vertex is not reconstructed)."""
    ref = Predictions(reference)
    data = ref.attrs.get("dataset")
    if not data or not Path(str(data)).is_file():
        raise DataError(f"{ref.path}: its event store (attribute 'dataset' = {data!r}) is not there")
    store = open_store(data, require=("hit_pmt", "hit_time", "hit_charge", "labels", "energies"))
    detector = detector_for(None, ref.attrs, store.attrs)
    stored = store.attrs.get("physics")
    physics: Mapping[str, Any] = stored if isinstance(stored, Mapping) else {}
    with h5py.File(ref.path, "r") as f:
        truth = {k: f[k][()] for k in f if k.startswith("aux_") or k == "event_index"}
    rows = np.asarray(truth["event_index"], dtype=np.int64)
    missing = [k for k in ("aux_label", "aux_energy", "aux_vertex", "aux_direction") if k not in truth]
    if missing:
        raise DataError(
            f"{ref.path}: datasets {missing} are missing; the classical baselines are scored on them"
        )

    calib = _calibration_rows(store, rows, n_calibration, seed)
    log.info("classical fits of %d calibration and %d evaluated events", len(calib), len(rows))
    c_fit = fit_store_events(store, calib, detector.pmt_positions, physics, true_vertex)
    c_labels = np.asarray(store.array("labels"))[calib].reshape(-1)
    c_energy = np.asarray(store.array("energies"), dtype=np.float64)[calib].reshape(len(calib), -1)[:, 0]
    fit = fit_store_events(store, rows, detector.pmt_positions, physics, true_vertex)
    if not fit["fitted"].all():
        log.warning(
            "%d of %d events have fewer than %d hits: tank centre and charge direction instead of a fit",
            int((~fit["fitted"]).sum()),
            len(rows),
            MIN_FIT_HITS,
        )
    labels = np.asarray(truth["aux_label"]).reshape(-1)

    energy_fit = fit_charge_energy(c_fit["charge"], c_energy, c_labels)
    unknown = sorted(set(labels.tolist()) - set(energy_fit))
    if unknown:
        raise DataError(f"{store.path}: no calibration events of labels {unknown}; raise n_calibration")
    a = np.array([energy_fit[int(label)][0] for label in labels])
    b = np.array([energy_fit[int(label)][1] for label in labels])
    n = len(rows)
    arrays: dict[str, np.ndarray] = dict(truth)
    arrays |= {
        "pred_energy.energy": (a * fit["charge"] + b).astype(np.float32),
        "true_energy.energy": np.asarray(truth["aux_energy"], dtype=np.float32).reshape(n),
        "pred_direction.direction": fit["direction"].astype(np.float32),
        "true_direction.direction": np.asarray(truth["aux_direction"], dtype=np.float32).reshape(n, 3),
    }
    sections: list[dict[str, Any]] = [
        {"name": "energy", "kind": "energy", "prefix": "energy.", "quantity": "kinetic"},
        {"name": "direction", "kind": "direction", "prefix": "direction."},
    ]
    if not true_vertex:
        arrays["pred_vertex.position"] = fit["vertex"].astype(np.float32)
        arrays["true_vertex.position"] = np.asarray(truth["aux_vertex"], dtype=np.float32).reshape(n, 3)
        sections.insert(1, {"name": "vertex", "kind": "vertex", "prefix": "vertex."})
    pid = _classification_section(ref)
    names, values = pid["class_names"], pid["label_values"]
    emu = np.isin(c_labels, [ELECTRON, MUON])
    if "e" in names and "mu" in names and len(set(c_labels[emu].tolist())) == 2:
        w, c = fit_discriminant(c_fit["off_ring_fraction"][emu], c_labels[emu] == ELECTRON)
        p_e = 1.0 / (1.0 + np.exp(-(w * fit["off_ring_fraction"] + c)))
        probs = np.zeros((n, len(names)))
        probs[:, names.index("e")], probs[:, names.index("mu")] = p_e, 1.0 - p_e
        index = {v: i for i, v in enumerate(values)}
        arrays["pred_pid.probabilities"] = probs.astype(np.float32)
        arrays["true_pid.labels"] = np.array([index.get(int(v), -1) for v in labels], dtype=np.int64)
        sections.append(pid)
    attrs = {
        "sections": sections,
        "task": "classical",
        "task_kind": "multi",
        "detector": ref.attrs.get("detector"),
        "model": MODEL + (" from the true vertex" if true_vertex else ""),
        "true_vertex": true_vertex,
        "checkpoint": "",
        "split": ref.attrs.get("split"),
        "dataset": str(Path(str(data)).resolve()),
        "config": {"detector": (ref.attrs.get("config") or {}).get("detector")},
        "unfitted_events": int((~fit["fitted"]).sum()),
        "calibration": {
            "events": len(calib),
            "seed": seed,
            "energy": {str(k): v for k, v in energy_fit.items()},
        },
    }
    if "events_digest" in ref.attrs:
        attrs["events_digest"] = ref.attrs["events_digest"]
    write_store(output, arrays, attrs=attrs, overwrite=overwrite)
    return Path(output)
