"""Helpers shared by the predict / evaluate / export tests: tiny trained checkpoints (trained once per
session), configs of the other entry points composed with a run directory, synthetic predictions files."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from recoml.conf import CONF_DIR
from recoml.data.store import open_store, write_store
from recoml.metrics.physics import distance_to_wall, towall
from recoml.utils.cli import compose_entry
from tests.helpers import make_cfg, toy_store_dir

#: The WCTE tank (conf/detector/wcte.yaml), for synthetic truth.
RADIUS, HALF_HEIGHT = 155.26, 156.0
CLASSES = ["gamma", "e", "mu"]
#: A small EdgeConv GNN for hit classification (training overrides).
HITS = ("model=gnn", "task=hit_classification", "model.net.hidden=16", "+model.net.head_hidden=32")


#: The packaged config of an entry point composed with overrides and a run directory.
compose_verb = compose_entry


@functools.cache
def trained_checkpoint(root: Path, name: str, overrides: tuple[str, ...] = ()) -> Path:
    """``last.ckpt`` of a two-step training on the shared toy WCTE store (once per session and name)."""
    from recoml.training import train

    data = toy_store_dir(root)
    cfg = make_cfg(root / f"trained_{name}", data, ["test=false", *overrides])
    train(cfg)
    return root / f"trained_{name}" / "run" / "checkpoints" / "last.ckpt"


# -------------------------------------------------------------------------------- synthetic predictions


def _truth(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    r = RADIUS * 0.8 * np.sqrt(rng.random(n))
    phi = 2 * np.pi * rng.random(n)
    vertex = np.stack([r * np.cos(phi), HALF_HEIGHT * 0.8 * (2 * rng.random(n) - 1), r * np.sin(phi)], 1)
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return {
        "aux_label": rng.integers(0, 3, n).astype(np.int32),
        "aux_energy": rng.uniform(100, 1000, n).astype(np.float32),
        "aux_vertex": vertex.astype(np.float32),
        "aux_direction": d.astype(np.float32),
        "aux_dwall": distance_to_wall(vertex, RADIUS, HALF_HEIGHT).astype(np.float32),
        "aux_towall": towall(vertex, d, RADIUS, HALF_HEIGHT).astype(np.float32),
    }


def _section(kind: str, name: str, prefix: str = "") -> dict:
    info = {"name": name, "kind": kind, "prefix": prefix}
    if kind == "classification":
        info |= {"class_names": CLASSES, "label_values": [0, 1, 2], "pairs": [["e", "mu"], ["e", "gamma"]]}
    if kind == "hit_classification":
        info["threshold"] = 0.5
    return info


def _outputs(
    kind: str, rng: np.random.Generator, truth: dict, n: int, quality: float, prefix: str = ""
) -> dict:
    p, t = f"pred_{prefix}", f"true_{prefix}"
    if kind == "classification":
        labels = rng.integers(0, 3, n)
        logits = rng.normal(size=(n, 3)) + quality * np.eye(3)[labels]
        probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        return {f"{p}probabilities": probs.astype(np.float32), f"{t}labels": labels}
    if kind == "energy":
        e = truth["aux_energy"]
        return {f"{p}energy": e * (1 + rng.normal(0, 0.3 / quality, n)), f"{t}energy": e}
    if kind == "vertex":
        v = truth["aux_vertex"]
        return {f"{p}position": v + rng.normal(0, 30 / quality, (n, 3)), f"{t}position": v}
    if kind == "direction":
        d = truth["aux_direction"]
        noisy = d + rng.normal(0, 0.3 / quality, (n, 3))
        return {f"{p}direction": noisy / np.linalg.norm(noisy, axis=1, keepdims=True), f"{t}direction": d}
    raise ValueError(kind)


def write_predictions(
    path: Path, kind: str, n: int = 400, seed: int = 0, quality: float = 2.0, replace: dict | None = None
) -> Path:
    """A predictions file as recoml.predict writes it, with synthetic outputs of a given quality.

    ``kind``: classification, energy, vertex, direction, hit_classification, or multi (pid + energy +
    direction). ``replace``: arrays written instead of the generated ones (hand-computed cases).
    """
    rng = np.random.default_rng(seed)
    truth = _truth(rng, n)
    arrays: dict[str, np.ndarray] = {"event_index": np.arange(n, dtype=np.int64), **truth}
    if kind == "multi":
        sections = [
            _section("classification", "pid", "pid."),
            _section("energy", "energy", "energy."),
            _section("direction", "direction", "direction."),
        ]
        for s in sections:
            arrays |= _outputs(s["kind"], rng, truth, n, quality, s["prefix"])
    elif kind == "hit_classification":
        sections = [_section(kind, "hit_classification")]
        counts = rng.integers(5, 40, n)
        signal = (rng.random(counts.sum()) < 0.7).astype(np.float32)
        score = 1 / (1 + np.exp(-(quality * (2 * signal - 1) + rng.normal(size=len(signal)))))
        arrays |= {
            "event_hits_index": np.r_[0, np.cumsum(counts)[:-1]].astype(np.int64),
            "hit_pred_hit_probability": score.astype(np.float32),
            "hit_true_hit_signal": signal,
        }
    else:
        name = "pid" if kind == "classification" else kind
        sections = [_section(kind, name)]
        arrays |= _outputs(kind, rng, truth, n, quality)
    attrs = {
        "sections": sections,
        "task": "multi" if kind == "multi" else sections[0]["name"],
        "task_kind": kind,
        "detector": "wcte",
        "model": "synthetic",
        "split": "test",
        "checkpoint": "none",
    }
    arrays |= replace or {}
    write_store(path, arrays, attrs=attrs, overwrite=True)
    return path


def load_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def store_predictions(
    path: Path, data: Path, rows: np.ndarray, kinds: tuple[str, ...] = ("direction",), seed: int = 0
) -> Path:
    """A network's predictions file over store rows ``rows`` of the WCTE toy store ``data``: its truth
    (and ``aux_*``) read from the store, predictions the truth plus noise, one section per kind
    (``classification``, ``energy``, ``vertex``, ``direction``; prefixed as a multi-task run when several)."""
    rng = np.random.default_rng(seed)
    store = open_store(data)
    n = len(rows)
    labels = np.asarray(store.array("labels"))[rows].reshape(n).astype(np.int32)
    truth = {
        "energy": np.asarray(store.array("energies"))[rows].reshape(n).astype(np.float32),
        "position": np.asarray(store.array("positions"))[rows].reshape(n, 3).astype(np.float32),
        "direction": np.asarray(store.array("directions"))[rows].reshape(n, 3).astype(np.float32),
    }
    arrays: dict[str, np.ndarray] = {
        "event_index": np.asarray(rows, dtype=np.int64),
        "aux_label": labels,
        "aux_energy": truth["energy"],
        "aux_vertex": truth["position"],
        "aux_direction": truth["direction"],
    }
    sections = []
    for kind in kinds:
        name = "pid" if kind == "classification" else kind
        prefix = f"{name}." if len(kinds) > 1 else ""
        section = _section(kind, name, prefix)
        p, t = f"pred_{prefix}", f"true_{prefix}"
        if kind == "classification":
            logits = rng.normal(size=(n, 3)) + 2.0 * np.eye(3)[labels]
            arrays[f"{p}probabilities"] = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
            arrays[f"{t}labels"] = labels.astype(np.int64)
        elif kind == "energy":
            arrays[f"{p}energy"] = truth["energy"] * (1 + rng.normal(0, 0.05, n))
            arrays[f"{t}energy"] = truth["energy"]
        elif kind == "vertex":
            arrays[f"{p}position"] = truth["position"] + rng.normal(0, 10.0, (n, 3))
            arrays[f"{t}position"] = truth["position"]
        else:
            noisy = truth["direction"] + rng.normal(0, 0.05, (n, 3))
            arrays[f"{p}direction"] = noisy / np.linalg.norm(noisy, axis=1, keepdims=True)
            arrays[f"{t}direction"] = truth["direction"]
        sections.append(section)
    attrs = {
        "sections": sections,
        "task": "multi" if len(kinds) > 1 else sections[0]["name"],
        "task_kind": "multi" if len(kinds) > 1 else kinds[0],
        "detector": "wcte",
        "model": "synthetic",
        "split": "test",
        "dataset": str(data),
        "events_digest": f"rows-{int(rows[0])}-{int(rows[-1])}",
        "config": {"detector": OmegaConf.to_container(OmegaConf.load(CONF_DIR / "detector" / "wcte.yaml"))},
    }
    return write_store(path, arrays, attrs=attrs, overwrite=True)
