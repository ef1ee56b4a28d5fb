"""The function behind ``python -m recoml.export``: checkpoint -> ONNX (+ int8), checked on real data.

1. Rebuild the trained model from the checkpoint and take its export view (normalization inside).
2. Export ``model.onnx`` with named inputs/outputs and metadata (feature names and order, class names,
   detector, normalization, graph parameters, recoml version, the checkpoint's provenance).
3. Parity: run ``parity_batches`` real batches of the split through onnxruntime and through the PyTorch
   model (representation + network + task, as in training and prediction); the largest absolute
   difference must be ``<= parity_tolerance``.
4. ``quantize=int8``: dynamic int8 weights, then the task's main metric on the split with fp32 and int8
   onnxruntime, and the change.
Results go to ``export.json`` in the run directory.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

import recoml
from recoml.data.store import open_store
from recoml.errors import ConfigError, DataError
from recoml.evaluation import evaluator_for
from recoml.exporting.onnx import (
    ParityError,
    max_diff,
    quantize_int8,
    run_session,
    session,
    write_onnx,
)
from recoml.exporting.wrappers import export_model
from recoml.io.provenance import write_json
from recoml.prediction.checkpoint import build_module, check_store, load_checkpoint, resolve_data_path
from recoml.prediction.reader import section_from_arrays
from recoml.prediction.run import check_output, copy_atomic, dataset_config, make_predict_datamodule
from recoml.prediction.schema import HIT, field_name
from recoml.utils.cli import save_config

log = logging.getLogger(__name__)

FORMATS = ("onnx",)
QUANTIZATIONS = (None, "int8")


def metadata(view: Any, module: Any, ckpt: Any) -> dict[str, Any]:
    """What a user of the ONNX file needs to feed it and read its outputs."""
    det = module.detector
    sections = module.task.prediction_sections()
    meta: dict[str, Any] = {
        "recoml_version": recoml.__version__,
        "producer": "recoml.export",
        "detector": det.name,
        "detector_n_pmts": det.n_pmts,
        "model": ckpt.name_of("model"),
        "task": module.task.name,
        "task_kind": module.task.kind,
        "sections": sections,
        "class_names": next((s["class_names"] for s in sections if "class_names" in s), []),
        "inputs": list(view.input_names),
        "outputs": list(view.output_names),
        "feature_names": view.feature_names(),
        "normalization": "inside the graph: log1p for log features, then (value - mean) / std",
        "normalization_stats": {
            n: {"mean": float(m), "std": float(s), "log1p": bool(lg)}
            for n, m, s, lg in zip(
                view.feature_names(), view.mean.flatten(), view.std.flatten(), view.log_mask.flatten()
            )
        },
        "checkpoint": str(ckpt.path),
        "provenance": ckpt.provenance,
    }
    if view.input_names == ("image",):
        meta["image_shape"] = list(view.image_shape)
        meta["description"] = (
            f"recoml {meta['model']} for {det.name}: input 'image' (events, {view.channels}, "
            f"{view.image_shape[0]}, {view.image_shape[1]}) of raw hit values per PMT channel "
            "(channel q * pmts_per_module + c holds quantity q of module channel c; 0 = no hit); "
            f"outputs {list(view.output_names)} in physical units"
        )
    else:
        meta["graph"] = {"k": view.k, "space_time": view.space_time, "time_scale_cm_per_ns": view.time_scale}
        meta["description"] = (
            f"recoml {meta['model']} for {det.name}: inputs 'x' (hits, {len(view.feature_names())}) raw node "
            f"features {view.feature_names()}, 'edge_index' (2, edges) int64 kNN edges [neighbour, centre] "
            f"(k={view.k} nearest PMTs by position{' and time' if view.space_time else ''}, per event), "
            "'batch' (hits,) int64 event of each hit; outputs "
            f"{list(view.output_names)} in physical units; run it on one intra-op thread in onnxruntime "
            "(its CPU ScatterND reductions give wrong rows on several threads)"
        )
    return meta


def _batches(cfg: DictConfig, ckpt: Any, module: Any):
    """A DataModule over the configured split of the checkpoint's dataset (or ``dataset=...``)."""

    if cfg.get("dataset") is not None and cfg.get("detector") is None:
        with open_dict(cfg):
            cfg.detector = OmegaConf.create(ckpt.config["detector"])
    dataset = dataset_config(cfg, ckpt)
    path = resolve_data_path(str(dataset.path), ckpt)
    with open_store(path) as store:
        check_store(store, module, ckpt, module.representation.hit_fields)
    dm = make_predict_datamodule(dataset, path, module, cfg.get("split", "test"), [])
    dm.setup("predict")
    return dm.predict_dataloader()


def _torch_outputs(module: Any, batch: Any) -> dict[str, np.ndarray]:
    with torch.no_grad():
        pred = module.task.predict(module(batch))
    return {k.replace("/", "."): v.float().numpy() for k, v in pred.items()}


def check_parity(
    path: Path, view: Any, module: Any, batches: list[Any], tolerance: float
) -> dict[str, float]:
    """onnxruntime vs the PyTorch model (and vs the export view) on real batches.

    The tolerance applies to ``|diff| / max(1, |value|)`` (see :func:`~recoml.exporting.onnx.max_diff`):
    absolute for probabilities and unit vectors, relative for MeV and cm.
    """
    sess = session(path)
    worst = {"model": [0.0, 0.0], "view": [0.0, 0.0]}
    events = 0
    for batch in batches:
        inputs = view.inputs(batch)
        ort_out = dict(zip(view.output_names, run_session(sess, inputs, view.input_names)))
        with torch.no_grad():
            refs = {"view": dict(zip(view.output_names, (t.numpy() for t in view(*inputs))))}
        refs["model"] = _torch_outputs(module, batch)
        for ref, out in refs.items():
            for name in view.output_names:
                absolute, scaled = max_diff(name, ort_out[name], out[name])
                worst[ref] = [max(worst[ref][0], absolute), max(worst[ref][1], scaled)]
        events += batch.n_events
    result = {
        "events": events,
        "tolerance": tolerance,
        "max_abs_diff": worst["model"][0],
        "max_scaled_diff": worst["model"][1],
        "max_scaled_diff_vs_export_view": worst["view"][1],
    }
    log.info(
        "parity onnxruntime vs PyTorch on %d real events: max |diff| %.3g, max |diff|/max(1,|value|) %.3g "
        "(tolerance %.1g)",
        events,
        worst["model"][0],
        worst["model"][1],
        tolerance,
    )
    if not worst["model"][1] <= tolerance:
        cause = (
            "the ONNX conversion itself"
            if worst["view"][1] > tolerance
            else "the raw-image convention (hits on one PMT in one event are summed before normalization)"
        )
        raise ParityError(
            f"{path}: onnxruntime differs from the PyTorch model by {worst['model'][1]:.3g} > {tolerance:g} "
            f"(|diff| / max(1, |value|)) on real events; the difference comes from {cause}"
        )
    return result


def _collect(sess: Any, view: Any, module: Any, batches, limit: int | None) -> dict[str, np.ndarray]:
    """Predictions of a session over batches, with the truth, in predictions-file names."""
    parts: dict[str, list[np.ndarray]] = defaultdict(list)
    node = module.task.node_level
    for i, batch in enumerate(batches):
        if limit is not None and i >= limit:
            break
        outputs = run_session(sess, view.inputs(batch), view.input_names)
        n_rows = batch.n_hits if node else batch.n_events
        for name, value in zip(view.output_names, outputs):
            if len(value) != n_rows:
                raise DataError(
                    f"export: output '{name}' has {len(value)} rows for {n_rows} (events with no hit?)"
                )
            parts[(HIT if node else "") + field_name("pred/" + name.replace(".", "/"))].append(value)
        for name, value in module.task.truth(batch).items():
            parts[(HIT if node else "") + field_name(f"true/{name}")].append(value.float().numpy())
        parts["event_index"].append(batch.event_index.numpy())
    return {k: np.concatenate(v) for k, v in parts.items()}


def metric_change(
    fp32: Path, int8: Path, view: Any, module: Any, batches, limit: int | None
) -> dict[str, Any]:
    """The task's main metric (per section) with fp32 and int8 onnxruntime on the same events."""

    arrays = {"fp32": _collect(session(fp32), view, module, batches, limit)}
    arrays["int8"] = _collect(session(int8), view, module, batches, limit)
    out: dict[str, Any] = {"events": int(len(arrays["fp32"]["event_index"]))}
    for info in module.task.prediction_sections():
        evaluator = evaluator_for(info["kind"])
        values = {}
        for precision, a in arrays.items():
            run = section_from_arrays(a, info, precision)
            evaluator.prepare([run])
            values[precision] = evaluator.evaluate(run).scalars[evaluator.main_metric]
        out[info["name"]] = {
            "metric": evaluator.main_metric,
            "fp32": values["fp32"],
            "int8": values["int8"],
            "change": values["int8"] - values["fp32"],
            "higher_is_better": evaluator.higher_is_better,
        }
        log.info(
            "int8 vs fp32 on %d events, %s %s: %.5g -> %.5g (change %+.3g)",
            out["events"],
            info["name"],
            evaluator.main_metric,
            values["fp32"],
            values["int8"],
            values["int8"] - values["fp32"],
        )
    return out


def export(cfg: DictConfig) -> dict[str, Any]:
    """Export as configured; returns the summary also written to ``export.json``."""

    fmt = str(cfg.get("format", "onnx")).lower()
    if fmt not in FORMATS:
        raise ConfigError(f"format: '{fmt}' is not supported; supported: {list(FORMATS)}")
    quantize = cfg.get("quantize")
    if quantize not in QUANTIZATIONS:
        raise ConfigError(f"quantize: '{quantize}' is not supported; use null or int8")
    overwrite = bool(cfg.get("overwrite", False))
    output = check_output(cfg.get("output"), overwrite)
    output_int8 = (
        output.with_name(f"{output.stem}.int8{output.suffix or '.onnx'}") if output and quantize else None
    )
    check_output(output_int8, overwrite)
    out_dir = Path(cfg.paths.output_dir)
    ckpt = load_checkpoint(cfg.get("ckpt_path"), cfg.get("trust") or ())
    module = build_module(ckpt)
    view = export_model(module)
    loader = _batches(cfg, ckpt, module)  # checks the data against the checkpoint before writing anything
    save_config(cfg, out_dir)
    n_parity = max(1, int(cfg.get("parity_batches", 4)))
    parity_batches = []
    for batch in loader:
        parity_batches.append(batch)
        if len(parity_batches) >= n_parity:
            break
    path = write_onnx(
        view,
        view.inputs(parity_batches[0]),
        out_dir / "model.onnx",
        metadata(view, module, ckpt),
        int(cfg.get("opset", 18)),
    )
    summary: dict[str, Any] = {
        "onnx": str(path),
        "inputs": list(view.input_names),
        "outputs": view.output_names,
    }
    summary["parity"] = check_parity(
        path, view, module, parity_batches, float(cfg.get("parity_tolerance", 1e-4))
    )
    if quantize == "int8":
        ops = cfg.get("int8_op_types")
        q = quantize_int8(path, out_dir / "model.int8.onnx", list(ops) if ops else None)
        summary["int8"] = {
            "onnx": str(q),
            **metric_change(path, q, view, module, loader, cfg.get("metric_batches")),
        }
    write_json(out_dir / "export.json", summary)
    if output is not None:
        copy_atomic(path, output)
        summary["output"] = str(output)
        if output_int8 is not None:
            copy_atomic(Path(summary["int8"]["onnx"]), output_int8)
            summary["output_int8"] = str(output_int8)
    log.info(
        "exported %s (%s)", path, ", ".join(f"{k}: {v}" for k, v in summary.items() if k.startswith("output"))
    )
    return summary
