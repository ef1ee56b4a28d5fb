"""Export trained models (ONNX with the normalization inside, optional int8), checked on real data."""

from recoml.exporting.onnx import ParityError, model_metadata, quantize_int8, session, write_onnx
from recoml.exporting.wrappers import GraphExport, ImageExport, export_model

__all__ = [
    "GraphExport",
    "ImageExport",
    "ParityError",
    "export",
    "export_model",
    "model_metadata",
    "quantize_int8",
    "session",
    "write_onnx",
]


def export(cfg):
    """Run ``python -m recoml.export`` in-process on a composed config (see :mod:`recoml.exporting.run`)."""
    from recoml.exporting.run import export as run

    return run(cfg)
