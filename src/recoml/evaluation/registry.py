"""The evaluator registry: one :class:`Evaluator` per task kind, found by the kind a predictions file
records for each of its sections.

Adding an evaluation for a new kind of task (e.g. edge classification, track efficiency) needs no edit
here or in the runner: subclass :class:`Evaluator`, decorate it with ``@register("edge_classification")``
and import its module (``recoml.evaluation`` imports the built-in ones). The runner then checks its
``required`` fields, calls :meth:`~Evaluator.prepare` once with every run (shared binning),
:meth:`~Evaluator.evaluate` per run and :meth:`~Evaluator.plot` once with all runs overlaid.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from recoml.errors import ConfigError
from recoml.evaluation.checks import check_binary, check_finite, check_probabilities
from recoml.plotting import save_figure
from recoml.prediction.reader import SectionData

__all__ = [
    "EVALUATORS",
    "Evaluator",
    "FigureRecord",
    "PlotSink",
    "SectionResult",
    "evaluator_for",
    "register",
]


@dataclass
class SectionResult:
    """What one run's evaluation gives: ``scalars`` (the metrics table and metrics.json), ``tables``
    (binned results, confusion matrices: JSON-able, in metrics.json) and ``curves`` (arrays only the
    plots use, e.g. full ROC curves)."""

    scalars: dict[str, float] = field(default_factory=dict)
    tables: dict[str, Any] = field(default_factory=dict)
    curves: dict[str, Any] = field(default_factory=dict)


@dataclass
class FigureRecord:
    section: str
    stem: str
    title: str
    caption: str
    files: dict[str, Path]


class PlotSink:
    """Collects an evaluation's figures: saves each as PNG + PDF under ``directory`` and records it for
    the report."""

    def __init__(self, directory: str | Path, note: str | None = None) -> None:
        self.directory = Path(directory)
        self.figures: list[FigureRecord] = []
        self.note = note  # written at the foot of every figure (e.g. "runs over different events")

    def save(self, fig: Any, section: str, name: str, title: str, caption: str = "") -> None:

        if self.note:
            fig.text(0.01, 0.003, self.note, fontsize=7, color="firebrick", ha="left", va="bottom")

        stem = f"{section}_{name}".replace("/", "_").replace(" ", "_")
        files = save_figure(fig, self.directory, stem)
        self.figures.append(FigureRecord(section, stem, title, caption, files))


class Evaluator:
    """Metrics and plots for one task kind. Options come from the evaluate config (``efficiencies``,
    ``working_point``, ``n_bins``, ``pairs``, ``hit_threshold``, ...)."""

    kind: ClassVar[str] = ""
    #: Fields (un-prefixed, see :class:`~recoml.prediction.reader.SectionData`) every run must have.
    required: ClassVar[tuple[str, ...]] = ()
    #: Required fields that are probabilities (finite, in [0, 1]) and truth flags (0 or 1); every other
    #: required field must be finite.
    probabilities: ClassVar[tuple[str, ...]] = ()
    flags: ClassVar[tuple[str, ...]] = ()
    #: The one number quoted for this kind (e.g. when int8 quantization is checked) and its direction.
    main_metric: ClassVar[str] = ""
    higher_is_better: ClassVar[bool] = True

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.options = dict(options or {})

    def check(self, run: SectionData) -> None:
        """DataError naming the file and field when a required field is missing or holds values no metric
        can be computed from (NaN/inf, probabilities outside [0, 1], flags other than 0/1)."""
        for name in self.required:
            if name in self.probabilities:
                check_probabilities(run, name)
            elif name in self.flags:
                check_binary(run, name)
            else:
                check_finite(run, name)

    def prepare(self, runs: Sequence[SectionData]) -> None:
        """Called once with every run before :meth:`evaluate` (e.g. to share bin edges)."""

    def evaluate(self, run: SectionData) -> SectionResult:
        raise NotImplementedError

    def plot(
        self, runs: Sequence[SectionData], results: Sequence[SectionResult], sink: PlotSink, section: str
    ) -> None:
        """Overlay every run on the same axes; save through ``sink``."""

    def highlights(self, run: SectionData, result: SectionResult) -> list[tuple[int, str]]:
        """Events worth an event display, as ``(store row, why)``: e.g. the best, the worst and a
        mis-identified event. None by default."""
        return []


EVALUATORS: dict[str, type[Evaluator]] = {}


def register(kind: str) -> Callable[[type[Evaluator]], type[Evaluator]]:
    """Class decorator: make ``cls`` the evaluator of task kind ``kind``."""

    def wrap(cls: type[Evaluator]) -> type[Evaluator]:
        cls.kind = kind
        EVALUATORS[kind] = cls
        return cls

    return wrap


def evaluator_for(
    kind: str, options: Mapping[str, Any] | None = None, module: str | None = None
) -> Evaluator:
    """The evaluator registered for ``kind``. A family's evaluator registers when its module (the
    section's ``evaluator``, declared by the task) is imported; only recoml's own modules are imported
    from a file's attributes, anything else must be imported by the caller first."""
    if kind not in EVALUATORS and module and (module == "recoml" or module.startswith("recoml.")):
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ConfigError(
                f"the evaluator module '{module}' of task kind '{kind}' cannot be imported: {err}"
            ) from None
    if kind not in EVALUATORS:
        raise ConfigError(
            f"no evaluator for task kind '{kind}'; known kinds: {sorted(EVALUATORS)} "
            "(add one with @recoml.evaluation.register)"
        )
    return EVALUATORS[kind](options)
