"""Evaluation of predictions files: a registry of evaluators keyed by task kind, plots, report, metrics."""

from recoml.evaluation import classification, hits, regression  # noqa: F401  (the built-ins)
from recoml.evaluation.registry import (
    EVALUATORS,
    Evaluator,
    PlotSink,
    SectionResult,
    evaluator_for,
    register,
)
from recoml.evaluation.run import Evaluation, evaluate, evaluate_files

__all__ = [
    "EVALUATORS",
    "Evaluation",
    "Evaluator",
    "PlotSink",
    "SectionResult",
    "evaluate",
    "evaluate_files",
    "evaluator_for",
    "register",
]
