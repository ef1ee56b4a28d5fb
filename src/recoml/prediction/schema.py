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

from typing import Any

import numpy as np
import torch

from recoml.metrics.physics import distance_to_wall, towall

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


def task_kind(task: Any) -> str:
    """The evaluation kind of a task: its ``kind`` attribute if it has one (so a new task type picks its
    evaluator without an edit here), else by class."""
    kind = getattr(task, "kind", None)
    if isinstance(kind, str) and kind:
        return kind
    from recoml.tasks import (
        ClassificationTask,
        DirectionTask,
        EnergyTask,
        HitClassificationTask,
        MultiTask,
        VertexTask,
    )

    for cls, name in (
        (HitClassificationTask, "hit_classification"),
        (ClassificationTask, "classification"),
        (EnergyTask, "energy"),
        (VertexTask, "vertex"),
        (DirectionTask, "direction"),
        (MultiTask, "multi"),
    ):
        if isinstance(task, cls):
            return name
    return type(task).__name__.lower()


def _section(name: str, task: Any, prefix: str) -> dict[str, Any]:
    info: dict[str, Any] = {"name": name, "kind": task_kind(task), "prefix": prefix}
    if getattr(task, "class_names", None) is not None:
        info["class_names"] = list(task.class_names)
        info["label_values"] = list(getattr(task, "label_values", []))
        info["pairs"] = [[task.class_names[a], task.class_names[b]] for a, b in getattr(task, "pairs", [])]
    if getattr(task, "threshold", None) is not None:
        info["threshold"] = float(task.threshold)
    if getattr(task, "quantity", None) is not None:  # energy: kinetic | total | momentum
        info["quantity"] = task.quantity
    return info


def sections_of(task: Any) -> list[dict[str, Any]]:
    """One entry per evaluated task: a multi-task's sub-tasks (field prefix ``<name>.``), else the task."""
    subtasks = getattr(task, "tasks", None)
    if subtasks is not None and task_kind(task) == "multi":
        return [_section(k, t, f"{k}.") for k, t in subtasks.items()]
    return [_section(task.name, task, "")]


def field_name(key: str) -> str:
    """``pred/energy`` -> ``pred_energy``; ``pred/pid/probabilities`` -> ``pred_pid.probabilities``."""
    kind, _, rest = key.partition("/")
    return f"{kind}_{rest.replace('/', '.')}"


def units_of(name: str) -> str:
    base = name.removeprefix(HIT)
    if base.startswith(AUX):
        return UNITS.get(base, "")
    return UNITS.get(base.split("_", 1)[-1].rsplit(".", 1)[-1], "")


def aux_truth(
    targets: dict[str, torch.Tensor], radius: float | None, half_height: float | None
) -> dict[str, np.ndarray]:
    """Per-event truth for plots from a batch's targets: label, energy, vertex, direction, and for a
    cylinder (``radius`` given) dwall and towall."""
    from recoml.tasks.regression import angles_to_direction

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
        if radius is not None and half_height is not None:
            out["aux_dwall"] = distance_to_wall(vertex, radius, half_height).astype(np.float32)
    direction = arr("directions")
    if direction is not None:
        direction = direction.reshape(len(direction), 3)
    elif "angles" in targets:
        direction = angles_to_direction(targets["angles"].detach().float().cpu()).numpy()
    if direction is not None:
        norm = np.linalg.norm(direction, axis=1, keepdims=True)
        direction = direction / np.where(norm > 0, norm, 1.0)
        out["aux_direction"] = direction.astype(np.float32)
        if vertex is not None and radius is not None and half_height is not None:
            out["aux_towall"] = towall(vertex, direction, radius, half_height).astype(np.float32)
    return out
