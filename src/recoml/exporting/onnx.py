"""ONNX files from export views: write with metadata, check parity with onnxruntime, quantize to int8.

The TorchScript-based exporter (``dynamo=False``) is used: it traces the export views' dynamic sizes
(events, hits, edges) without guards on data-dependent shapes. Opset 18 or later is required: the GNN
view's scatters are ``ScatterND`` with a max/add reduction.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recoml.errors import ConfigError, RecomlError
from recoml.io.atomic import atomic_output

log = logging.getLogger(__name__)

#: Lowest opset whose ScatterND has max/min reductions.
MIN_OPSET = 18


class ParityError(RecomlError):
    """onnxruntime and PyTorch disagree beyond the tolerance."""


def write_onnx(
    model: Any,
    inputs: tuple[torch.Tensor, ...],
    path: str | os.PathLike,
    metadata: Mapping[str, Any],
    opset: int,
) -> Path:
    """Export ``model`` (an export view) to ``path`` with named inputs/outputs, dynamic sizes and
    ``metadata`` (values JSON-encoded unless strings) as model properties; written to a temporary name
    and renamed."""
    import onnx

    if opset < MIN_OPSET:
        raise ConfigError(f"opset: {opset} is too old; ScatterElements reductions need opset >= {MIN_OPSET}")
    path = Path(path)
    with atomic_output(path) as tmp:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings about Python values in the export views
            torch.onnx.export(
                model,
                inputs,
                str(tmp),
                dynamo=False,
                opset_version=opset,
                input_names=list(model.input_names),
                output_names=list(model.output_names),
                dynamic_axes=model.dynamic_axes(),
                do_constant_folding=True,
            )
        proto = onnx.load(str(tmp))
        _inline_shared_initializers(proto)
        props = {k: v if isinstance(v, str) else json.dumps(v, default=str) for k, v in metadata.items()}
        onnx.helper.set_model_props(proto, props)
        proto.doc_string = str(metadata.get("description", ""))
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
    return path


def _inline_shared_initializers(proto: Any) -> None:
    """Replace ``Identity(initializer)`` nodes by a copy of the initializer.

    The exporter shares identical weights (e.g. the zero-initialized last BatchNorm of residual blocks
    folded into their convs) through Identity nodes; onnxruntime's quantizer needs every Conv/MatMul
    weight to be an initializer.
    """
    graph = proto.graph
    inits = {i.name: i for i in graph.initializer}
    keep = []
    for node in graph.node:
        if node.op_type == "Identity" and node.input[0] in inits:
            copy = type(inits[node.input[0]])()
            copy.CopyFrom(inits[node.input[0]])
            copy.name = node.output[0]
            graph.initializer.append(copy)
        else:
            keep.append(node)
    if len(keep) != len(graph.node):
        del graph.node[:]
        graph.node.extend(keep)


def session(path: str | os.PathLike, threads: int | None = None):
    """An onnxruntime CPU session (warnings silenced; ``threads`` intra-op threads if given).

    A model with a reducing ``ScatterND`` (the graph models' neighbour aggregation) runs on one intra-op
    thread: onnxruntime's CPU kernel splits the updates between threads without guarding rows that two
    updates share, so with several threads some sums and maxima come out wrong, differently from run to
    run (onnxruntime 1.32, 137,600 edges into 8,600 rows: 3 of 10 runs wrong with 2 threads, none with 1).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if reducing_scatter(path):
        if threads and int(threads) > 1:
            log.warning("%s: reducing ScatterND runs wrong on several threads: 1, not %s", path, threads)
        threads = 1
    if threads:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def reducing_scatter(path: str | os.PathLike) -> bool:
    """Whether the ONNX model at ``path`` has a ``ScatterND`` node with a reduction (see :func:`session`)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return any(
        node.op_type == "ScatterND"
        and any(a.name == "reduction" and a.s not in (b"", b"none") for a in node.attribute)
        for node in model.graph.node
    )


def run_session(sess: Any, inputs: tuple[torch.Tensor, ...], names: Iterable[str]) -> list[np.ndarray]:
    feed = {n: t.detach().cpu().numpy() for n, t in zip(names, inputs)}
    return sess.run(None, feed)


def max_diff(name: str, value: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """``(max |value - reference|, max |value - reference| / max(1, |reference|))``: the second is absolute
    for quantities of order one (probabilities, unit vectors) and relative for large ones (MeV, cm), where
    float32 rounding alone exceeds 1e-4. Angle outputs (``*angles``) are compared modulo 2 pi."""
    a, b = np.asarray(value, dtype=np.float64), np.asarray(reference, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf"), float("inf")
    d = a - b
    if name.endswith("angles"):
        d = (d + np.pi) % (2 * np.pi) - np.pi
    if not d.size:
        return 0.0, 0.0
    d = np.abs(d)
    return float(d.max()), float((d / np.maximum(1.0, np.abs(b))).max())


def model_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata properties of an ONNX file."""
    import onnx

    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def quantize_int8(
    src: str | os.PathLike, dst: str | os.PathLike, op_types: Sequence[str] | None = None
) -> Path:
    """Dynamic int8 quantization of the weights (onnxruntime ``quantize_dynamic``), metadata kept.

    ``op_types`` limits it to some operators (e.g. ``["MatMul", "Gemm"]``: onnxruntime's int8
    ``ConvInteger`` is slower than fp32 convolutions on CPUs); ``None`` quantizes every supported one.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    dst = Path(dst)
    root = logging.getLogger()
    level = root.level
    with atomic_output(dst) as tmp:
        root.setLevel(logging.ERROR)  # the quantizer logs every tensor it leaves in float on the root logger
        try:
            quantize_dynamic(
                str(src),
                str(tmp),
                weight_type=QuantType.QInt8,
                op_types_to_quantize=list(op_types or []) or None,
            )
        finally:
            root.setLevel(level)
        proto = onnx.load(str(tmp))
        which = ", ".join(op_types) if op_types else "all supported operators"
        props = model_metadata(src) | {"quantization": f"dynamic int8 weights of {which} (quantize_dynamic)"}
        onnx.helper.set_model_props(proto, props)
        onnx.save(proto, str(tmp))
    return dst
