"""Data identity: which detector a store was made for, its conventions, and which events it holds.

A store, a detector and a checkpoint belong together only when they agree on

* the detector **fingerprint**: sensor count and a hash of the sensor positions (rounded to 0.01 cm,
  so a float32/float64 round trip does not change it);
* the **conventions**: ``time_origin`` (``vertex``: times start at the interaction, as in the toy
  simulation; ``trigger``: WCSim digit times, offset by the trigger window) and ``energy_kind``
  (``kinetic``, ``total`` or ``momentum`` of the primary, MeV).

Events are identified across files by **event keys**: a 64-bit hash of the event's source (the toy
generator's settings, or the ROOT file it was converted from) and its event id, so a model's training
events are recognised in another store made from the same source. A store without event ids falls back
on its content hash and row number.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recoml.errors import DataError
from recoml.io.provenance import file_sha256

TIME_ORIGINS = ("vertex", "trigger")
ENERGY_KINDS = ("kinetic", "total", "momentum")
FINGERPRINT_ATTR = "detector_fingerprint"
EVENT_SOURCE_ATTR = "event_source"


@dataclass(frozen=True)
class Fingerprint:
    """Sensor count and a short hash of the sensor positions."""

    n_sensors: int
    positions: str

    def __str__(self) -> str:
        return f"{self.n_sensors} sensors, positions {self.positions}"

    def as_attr(self) -> str:
        return f"{self.n_sensors}/{self.positions}"

    @classmethod
    def parse(cls, value: Any) -> Fingerprint | None:
        """From a store or checkpoint attribute (``None`` when absent or unreadable)."""
        if isinstance(value, Fingerprint):
            return value
        if not isinstance(value, str) or "/" not in value:
            return None
        count, digest = value.split("/", 1)
        return cls(int(count), digest) if count.isdigit() else None


def fingerprint_positions(positions: np.ndarray) -> Fingerprint:
    """The fingerprint of ``(P, 3)`` sensor positions in cm."""
    pos = np.ascontiguousarray(np.round(np.asarray(positions, dtype=np.float64), 2) + 0.0)
    return Fingerprint(len(pos), hashlib.sha256(pos.tobytes()).hexdigest()[:16])


def sensor_positions(detector: Any) -> np.ndarray | None:
    """A detector's sensor positions (``sensor_positions`` or ``pmt_positions``), ``None`` if it has none."""
    for name in ("sensor_positions", "pmt_positions"):
        value = getattr(detector, name, None)
        if value is not None:
            return np.asarray(value)
    return None


def detector_fingerprint(detector: Any) -> Fingerprint | None:
    """The detector's fingerprint, ``None`` for detectors without sensors (trackers)."""
    own = getattr(detector, "fingerprint", None)
    if isinstance(own, Fingerprint):
        return own
    positions = sensor_positions(detector)
    return None if positions is None else fingerprint_positions(positions)


def describe_detector(detector: Any) -> str:
    """``detector=<name> (<fingerprint>)`` for messages."""
    fp = detector_fingerprint(detector)
    name = detector.name
    return f"detector={name}" + (f" ({fp})" if fp else "")


def identity_attrs(
    detector: Any, *, time_origin: str, energy_kind: str, event_source: str | None = None
) -> dict[str, Any]:
    """The attributes a store writer adds so that readers can check what the store belongs to."""
    check_conventions(time_origin, energy_kind, "store attributes")
    out: dict[str, Any] = {"detector": detector.name, "time_origin": time_origin}
    out["energy_kind"] = energy_kind
    fp = detector_fingerprint(detector)
    if fp is not None:
        out[FINGERPRINT_ATTR] = fp.as_attr()
        out["n_pmts"] = fp.n_sensors
    if event_source:
        out[EVENT_SOURCE_ATTR] = event_source
    return out


def check_conventions(time_origin: str | None, energy_kind: str | None, where: str) -> None:
    if time_origin is not None and time_origin not in TIME_ORIGINS:
        raise DataError(f"{where}: time_origin must be one of {list(TIME_ORIGINS)}, got {time_origin!r}")
    if energy_kind is not None and energy_kind not in ENERGY_KINDS:
        raise DataError(f"{where}: energy_kind must be one of {list(ENERGY_KINDS)}, got {energy_kind!r}")


def source_hash(settings: Mapping[str, Any]) -> str:
    """A short hash of the settings that fully determine a generator's events (not their count)."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def store_identity(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """What a store says about itself (``None`` where it does not say)."""
    return {
        "detector": attrs.get("detector") if isinstance(attrs.get("detector"), str) else None,
        "fingerprint": Fingerprint.parse(attrs.get(FINGERPRINT_ATTR)),
        "time_origin": attrs.get("time_origin"),
        "energy_kind": attrs.get("energy_kind"),
    }


def check_store_detector(
    path: str | Path, attrs: Mapping[str, Any], detector: Any, detector_label: str
) -> None:
    """DataError when a store was made for another detector than ``detector`` (by fingerprint, else by
    sensor count). ``detector_label`` says where the detector comes from (``detector=hk``, a checkpoint)."""
    mine = detector_fingerprint(detector)
    ident = store_identity(attrs)
    theirs = ident["fingerprint"]
    made_for = f"detector={ident['detector']}" if ident["detector"] else "another detector"
    if theirs is not None and mine is not None:
        if theirs != mine:
            raise DataError(
                f"{path} was made for {made_for} ({theirs}) but {detector_label} has {mine}; "
                "use the store made for this geometry (or simulate one: each geometry gets its own file)"
            )
        return
    name = detector.name
    if ident["detector"] and name and ident["detector"] != name:
        raise DataError(
            f"{path} holds {ident['detector']} events (its 'detector' attribute) but {detector_label} "
            f"is detector={name}"
        )
    n_pmts = attrs.get("n_pmts")
    if mine is not None and isinstance(n_pmts, int | np.integer) and int(n_pmts) != mine.n_sensors:
        raise DataError(
            f"{path} was written for {int(n_pmts)} sensors (its 'n_pmts' attribute) but {detector_label} "
            f"has {mine.n_sensors}"
        )


# ------------------------------------------------------------------------------------------ event keys


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer: a well-spread 64-bit hash of each value."""
    x = np.asarray(x, dtype=np.uint64).copy()
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


def _string_hash(text: str) -> np.uint64:
    return np.frombuffer(hashlib.sha256(text.encode()).digest()[:8], dtype=np.uint64)[0]


def event_keys(store: Any, rows: np.ndarray, content_hash: str | None = None) -> np.ndarray:
    """64-bit keys (as int64) of the events at ``rows`` of an open :class:`~recoml.data.store.EventStore`.

    Source: the ``event_source`` attribute (toy generators), else each event's ``root_files`` entry (file
    name only), else ``content_hash`` of the file (computed when not given) with the row as event id.
    """
    rows = np.asarray(rows, dtype=np.int64)
    source = store.attrs.get(EVENT_SOURCE_ATTR)
    fields = set(store.fields)
    if "event_ids" in fields and (isinstance(source, str) or "root_files" in fields):
        ids = np.asarray(store.array("event_ids"))[rows].astype(np.int64)
        if isinstance(source, str):
            base = np.full(len(rows), _string_hash(source), dtype=np.uint64)
        else:
            files = np.asarray(store.array("root_files"))[rows]
            names = [Path(f.decode() if isinstance(f, bytes) else str(f)).name for f in files]
            lookup = {n: _string_hash(n) for n in set(names)}
            base = np.array([lookup[n] for n in names], dtype=np.uint64)
    else:
        if content_hash is None:
            content_hash = file_sha256(store.path)
        base = np.full(len(rows), _string_hash(content_hash), dtype=np.uint64)
        ids = rows
    keys = _mix(base ^ _mix(ids.astype(np.uint64)))
    return keys.view(np.int64)


def keys_digest(keys: np.ndarray) -> str:
    """A hash of a set of event keys (order does not matter)."""
    return hashlib.sha256(np.sort(np.asarray(keys, dtype=np.int64)).tobytes()).hexdigest()[:16]
