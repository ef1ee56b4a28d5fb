"""The predictions file: what is in it and how fields are named.

A predictions file is an event store (``recoml.data.store`` layout) one row per predicted event, sorted by
``event_index`` (the event's row in the source store):

* ``pred_<name>`` / ``true_<name>``: the task's outputs in physical units and the truth they are compared
  with (``pred_probabilities (N, C)`` and ``true_labels (N,)`` class indices; ``pred_energy (N,)`` MeV;
  ``pred_position (N, 3)`` cm; ``pred_direction (N, 3)`` unit vectors ...). A multi-task run prefixes the
  sub-task: ``pred_pid.probabilities``.
* per-hit tasks: ``hit_pred_<name>`` / ``hit_true_<name>`` with the offsets ``event_hits_index``.
* ``aux_*``: per-event truth for plots, whatever the task: ``aux_label`` (stored label), ``aux_energy``
  (MeV), ``aux_vertex`` (cm), ``aux_direction`` (unit), ``aux_dwall`` and ``aux_towall`` (cm, from the
  detector geometry).

File attributes: ``sections`` (JSON list, one entry per task: ``name``, ``kind``, ``prefix`` and the
task's ``class_names`` / ``pairs`` / ``threshold``), ``task``, ``task_kind``, ``detector``, ``model``,
``checkpoint``, ``split``, ``dataset``, ``provenance`` (the checkpoint's ``recoml`` record) and ``config``
(the training config). ``pred_*probabilities`` carry ``class_names`` as a dataset attribute; every field
carries its ``units``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from recoml.contracts.detector import Detector
from recoml.tasks.regression import angles_to_direction

PRED, TRUE, AUX, HIT = "pred_", "true_", "aux_", "hit_"
FILE_NAME = "predictions.h5"

#: Units of the outputs tasks produce, by output name (the last part of the key).
UNITS = {
    "probabilities": "",
    "labels": "class index",
    "energy": "MeV",
    "position": "cm",
    "direction": "unit vector",
    "angles": "rad (polar from +y, azimuth atan2(z, x))",
    "hit_probability": "",
    "hit_signal": "1 signal, 0 background",
    "aux_label": "stored label (gamma 0, e 1, mu 2, pi0 3)",
    "aux_energy": "MeV",
    "aux_vertex": "cm",
    "aux_direction": "unit vector",
    "aux_dwall": "cm",
    "aux_towall": "cm",
    # Tracking (edge predictions copy these store hit fields).
    "x": "mm",
    "y": "mm",
    "z": "mm",
    "tpx": "GeV",
    "tpy": "GeV",
    "tpz": "GeV",
}

#: Store fields read (when present) for the per-event truth every evaluation can use.
AUX_SOURCES = ("labels", "energies", "positions", "directions", "angles")


def field_name(key: str) -> str:
    """``pred/energy`` -> ``pred_energy``; ``pred/pid/probabilities`` -> ``pred_pid.probabilities``."""
    kind, _, rest = key.partition("/")
    return f"{kind}_{rest.replace('/', '.')}"


def units_of(name: str) -> str:
    base = name.removeprefix(HIT)
    if base.startswith(AUX):
        return UNITS.get(base, "")
    return UNITS.get(base.split("_", 1)[-1].rsplit(".", 1)[-1], "")


def aux_truth(targets: Mapping[str, torch.Tensor], detector: Detector) -> dict[str, np.ndarray]:
    """Per-event truth for plots from a batch's targets: label, energy, vertex, direction, plus what the
    detector derives from them (e.g. distance to the wall)."""

    def arr(name: str) -> np.ndarray | None:
        value = targets.get(name)
        return None if value is None else value.detach().float().cpu().numpy()

    out: dict[str, np.ndarray] = {}
    n = None
    if "labels" in targets:
        out["aux_label"] = targets["labels"].detach().cpu().numpy().reshape(-1).astype(np.int32)
    if (e := arr("energies")) is not None:
        n = len(e)
        out["aux_energy"] = e.reshape(n, -1)[:, 0].astype(np.float32)
    vertex = arr("positions")
    if vertex is not None:
        vertex = vertex.reshape(len(vertex), 3)
        out["aux_vertex"] = vertex.astype(np.float32)
    direction = arr("directions")
    if direction is not None:
        direction = direction.reshape(len(direction), 3)
    elif "angles" in targets:
        direction = angles_to_direction(targets["angles"].detach().float().cpu()).numpy()
    if direction is not None:
        norm = np.linalg.norm(direction, axis=1, keepdims=True)
        direction = direction / np.where(norm > 0, norm, 1.0)
        out["aux_direction"] = direction.astype(np.float32)
    return out | detector.aux_truth(out)
