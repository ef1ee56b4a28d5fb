"""Predictions: a checkpoint run over a dataset split, streamed to a predictions file, and read back."""

from recoml.prediction.reader import Predictions, SectionData
from recoml.prediction.schema import FILE_NAME

__all__ = ["FILE_NAME", "Predictions", "SectionData", "predict"]


def predict(cfg):
    """Run ``python -m recoml.predict`` in-process on a composed config (see :mod:`recoml.prediction.run`)."""
    from recoml.prediction.run import predict as run

    return run(cfg)
