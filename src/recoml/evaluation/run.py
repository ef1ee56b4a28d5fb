"""Evaluate one predictions file, or compare several on the same plots and tables.

Sections (one per task in a file) are matched across files by task kind, so a CNN's and a GNN's PID, or
the energy head of a multi-task run and a single-task energy run, are compared with the same evaluator,
the same binning and the same metric definitions. ``kind`` restricts the evaluation to one kind and
refuses files without it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from omegaconf import DictConfig, OmegaConf

from recoml.data.store import open_store
from recoml.errors import ConfigError, DataError, RecomlError
from recoml.evaluation.displays import detector_for, event_views
from recoml.evaluation.external import ExternalRun, external_name, is_external, read_external
from recoml.evaluation.registry import EVALUATORS, FigureRecord, PlotSink, SectionResult, evaluator_for
from recoml.evaluation.report import write_metrics_json, write_report
from recoml.io.atomic import atomic_output
from recoml.loggers import log_figures
from recoml.plotting import apply_style
from recoml.plotting.events import draw_event
from recoml.prediction.reader import Predictions, predictions_file
from recoml.utils.cli import save_config
from recoml.utils.config import config_dict, instantiate_group

log = logging.getLogger(__name__)

#: A run compared: a recoml predictions file, or a WatChMaL / fiTQun output read over a recoml run's events.
Run = Predictions | ExternalRun


@dataclass
class Evaluation:
    """Where an evaluation went and what it found: ``sections[name]["results"][label]`` hold the
    :class:`SectionResult` of every run."""

    directory: Path
    report: Path
    metrics: Path
    sections: dict[str, dict[str, Any]]
    figures: list[FigureRecord]

    def scalars(self, section: str, label: str) -> dict[str, float]:
        return self.sections[section]["results"][label].scalars


def default_labels(paths: Sequence[Path]) -> list[str]:
    """The run directory's name of each file (a WatChMaL run's, a fiTQun file's stem); ``run0``,
    ``run1``... where those are not unique."""
    names = [external_name(p) if is_external(p) else (p.parent.name or p.stem) for p in paths]
    return names if len(set(names)) == len(names) else [f"run{i}" for i in range(len(paths))]


def open_runs(files: Sequence[Path], labels: Sequence[str], require_same_events: bool) -> list[Run]:
    """recoml predictions files, and WatChMaL / fiTQun outputs read over the events of the first one (the
    recoml run they are compared with, whose truth they are scored against)."""
    if is_external(files[0]):
        raise ConfigError(
            f"predictions: {files[0]} is a WatChMaL or fiTQun output; put a recoml predictions file first "
            "(the events and truth the other runs are compared on)"
        )
    reference = Predictions(files[0], labels[0])
    runs: list[Run] = [reference]
    for path, label in zip(files[1:], labels[1:]):
        if is_external(path):
            runs.append(read_external(path, label, reference, require_same_events))
        else:
            runs.append(Predictions(path, label))
    return runs


def _section_keys(pred: Run) -> dict[str, dict[str, Any]]:
    """Sections of a file keyed by kind (by ``kind:name`` when a kind occurs twice)."""
    kinds = [s["kind"] for s in pred.sections]
    return {
        (s["kind"] if kinds.count(s["kind"]) == 1 else f"{s['kind']}:{s['name']}"): s for s in pred.sections
    }


def _match_sections(preds: Sequence[Run], kind: str | None) -> dict[str, list[dict[str, Any]]]:
    keyed = [_section_keys(p) for p in preds]
    if kind is not None:
        if kind not in EVALUATORS:
            raise ConfigError(f"kind: unknown evaluation kind '{kind}'; known: {sorted(EVALUATORS)}")
        required = ", ".join(EVALUATORS[kind].required)
        for p, k in zip(preds, keyed):
            if kind not in k:
                raise DataError(
                    f"{p.describe()}; kind={kind} needs a task of kind {kind} (fields {required})"
                )
        return {kind: [k[kind] for k in keyed]}
    common = [key for key in keyed[0] if all(key in k for k in keyed[1:])]
    if not common:
        found = "; ".join(p.describe() for p in preds)
        raise DataError(f"the predictions have no task kind in common, so they cannot be compared: {found}")
    for p, k in zip(preds, keyed):
        skipped = sorted(set(k) - set(common))
        if skipped:
            log.warning("%s: sections %s are not in every file compared; skipped", p.path, skipped)
    return {key: [k[key] for k in keyed] for key in common}


def evaluate_files(
    paths: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    labels: Sequence[str] | None = None,
    kind: str | None = None,
    options: Mapping[str, Any] | None = None,
    style: str | None = None,
    require_same_events: bool = True,
) -> Evaluation:
    """Metrics, plots (``plots/*.png|pdf``), ``report.md`` and ``metrics.json`` in ``out_dir``."""

    # a run directory stands for its predictions.h5; WatChMaL run directories and fiTQun files as they are
    files = [Path(p) if is_external(p) else predictions_file(str(p)) for p in paths]
    if not files:
        raise ConfigError("predictions: give at least one predictions file")
    labels = list(labels) if labels else default_labels(files)
    if len(labels) != len(files):
        raise ConfigError(f"labels: {len(labels)} labels for {len(files)} predictions files")
    if len(set(labels)) != len(labels):
        raise ConfigError(f"labels must be unique, got {labels}")
    preds = open_runs(files, labels, require_same_events)
    matched = _match_sections(preds, kind)
    notes = event_notes(preds, require_same_events)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    apply_style(style)
    sink = PlotSink(out_dir / "plots", note="; ".join(notes) or None)
    sections: dict[str, dict[str, Any]] = {}
    highlights: list[tuple[int, str]] = []
    for key, infos in matched.items():
        name = infos[0]["name"]
        evaluator = evaluator_for(infos[0]["kind"], options, infos[0].get("evaluator"))
        runs = [p.section(info) for p, info in zip(preds, infos)]
        for run in runs:
            evaluator.check(run)
        evaluator.prepare(runs)
        results: dict[str, SectionResult] = {run.label: evaluator.evaluate(run) for run in runs}
        evaluator.plot(runs, list(results.values()), sink, name)
        highlights += [
            (row, f"{name}, {why}") for row, why in evaluator.highlights(runs[0], results[runs[0].label])
        ]
        sections[name] = {
            "kind": infos[0]["kind"],
            "key": key,
            "results": results,
            "main_metric": evaluator.main_metric,
            "quantity": infos[0].get("quantity"),  # energy: kinetic | total | momentum
        }
        log.info(
            "%s (%s): %s",
            name,
            key,
            {lab: r.scalars.get(evaluator.main_metric) for lab, r in results.items()},
        )
    if dict(options or {}).get("displays", True) and isinstance(preds[0], Predictions):
        draw_highlights(preds[0], highlights, sink)
    add_training_curves(preds, sink)
    runs_meta = [
        {
            "label": p.label,
            "path": str(p.path.resolve()),
            "task": p.attrs.get("task"),
            "model": p.attrs.get("model"),
            "detector": p.attrs.get("detector"),
            "split": p.attrs.get("split"),
            "n_events": p.n_events,
            "checkpoint": p.attrs.get("checkpoint"),
        }
        for p in preds
    ]
    metrics = write_metrics_json(out_dir / "metrics.json", runs_meta, sections, sink.figures)
    report = write_report(out_dir / "report.md", runs_meta, sections, sink.figures, notes=notes)
    log.info("report: %s (%d figures)", report, len(sink.figures))
    return Evaluation(out_dir, report, metrics, sections, sink.figures)


def events_id(pred: Run) -> str:
    """Which events a predictions file holds: its ``events_digest`` (event source and id), else the
    dataset file and rows it was predicted on; a WatChMaL or fiTQun run those of its recoml run."""
    if isinstance(pred, ExternalRun):
        return events_id(pred.reference) if pred.same_events else f"{pred.attrs['model']}:{pred.n_events}"
    digest = pred.attrs.get("events_digest")
    if isinstance(digest, str):
        return digest
    with h5py.File(pred.path, "r") as f:
        rows = np.sort(f["event_index"][()])
    text = f"{pred.attrs.get('dataset')}|".encode() + rows.astype(np.int64).tobytes()
    return hashlib.sha256(text).hexdigest()[:16]


def event_notes(preds: Sequence[Run], require_same_events: bool) -> list[str]:
    """Refuse to overlay runs over different events (unless told); the notes the plots and report carry."""
    notes = []
    ids = [events_id(p) for p in preds]
    if len(set(ids)) > 1:
        other = next(p for p, i in zip(preds, ids) if i != ids[0])
        if require_same_events:
            raise DataError(
                f"{preds[0].path} ({preds[0].n_events} events) and {other.path} ({other.n_events} events) "
                "hold predictions for different events, so their curves are not comparable; predict the "
                "same split of the same data, or set require_same_events=false"
            )
        log.warning("the runs compared cover different events (require_same_events=false)")
        notes.append("runs over different events (require_same_events=false)")
    for p in preds:
        seen = int(p.attrs.get("n_training_events") or 0)
        if seen:
            notes.append(f"{p.label}: {seen} of {p.n_events} events were training events")
    return notes


#: At most this many events are drawn in a report.
MAX_DISPLAYS = 6
DISPLAY_SECTION = "event displays"


def draw_highlights(pred: Predictions, highlights: Sequence[tuple[int, str]], sink: PlotSink) -> None:
    """Event displays of the evaluators' highlighted events (first run only) into the report; skipped with
    a warning when the event store behind the predictions is gone or the detector has no display."""

    why: dict[int, list[str]] = {}
    for row, caption in highlights:
        why.setdefault(int(row), []).append(caption)
    rows = list(why)[:MAX_DISPLAYS]
    data = pred.attrs.get("dataset")
    if not rows:
        return
    if not data or not Path(str(data)).is_file():
        log.warning("%s: its event store %s is not there; the report has no event displays", pred.path, data)
        return
    try:
        detector = detector_for(None, pred.attrs, open_store(data).attrs)
        views = event_views(rows, data, pred.path, ["; ".join(why[r]) for r in rows])
        for view in views:
            for title, files in draw_event(view, detector, sink.directory):
                stem = next(iter(files.values())).stem
                sink.figures.append(FigureRecord(DISPLAY_SECTION, stem, title, view.caption, files))
    except RecomlError as exc:
        log.warning("no event displays in the report: %s", exc)


def training_curves_of(pred: Run) -> Path | None:
    """``training_curves.png`` of the training run whose checkpoint made ``pred``, when it is still there."""
    checkpoint = pred.attrs.get("checkpoint")
    if not checkpoint:
        return None
    curves = Path(str(checkpoint)).parent.parent / "training_curves.png"
    return curves if curves.is_file() else None


def add_training_curves(preds: Sequence[Run], sink: PlotSink) -> None:
    """Each run's training curves (drawn during training in its run directory), copied into ``plots/``
    and recorded for the report's ``training`` section."""
    for pred in preds:
        png = training_curves_of(pred)
        if png is None:
            continue
        files = {}
        for fmt in ("png", "pdf"):
            src = png.with_suffix(f".{fmt}")
            if src.is_file():
                files[fmt] = sink.directory / f"training_{pred.label}_curves.{fmt}"
                with atomic_output(files[fmt]) as tmp:
                    shutil.copyfile(src, tmp)
        run_dir = png.parent
        sink.figures.append(
            FigureRecord(
                "training",
                f"training_{pred.label}_curves",
                f"{pred.label}: loss and metrics vs epoch",
                f"from {run_dir}/csv/metrics.csv",
                files,
            )
        )


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    if OmegaConf.is_list(value) or isinstance(value, list | tuple):
        return list(value)
    return [value]


#: What ``copy_outputs`` copies after everything else: the files that say the evaluation is complete.
LAST_COPIED = ("metrics.json", "report.md")


def copy_outputs(src: Path, dst: Path, overwrite: bool) -> Path:
    """Copy the evaluation's files into ``dst``, each atomically, ``metrics.json`` and ``report.md`` last (a
    copy that fails half-way leaves no report that claims to be complete). ``overwrite`` replaces files of
    the same names only: anything else in ``dst`` (the predictions an evaluation reads, other reports)
    stays."""
    if dst.exists() and not overwrite:
        raise DataError(f"output: {dst} already exists; set overwrite=true to replace it")
    if dst.exists() and not dst.is_dir():
        raise DataError(f"output: {dst} is a file; give a directory for the evaluation's outputs")
    files = sorted(p for p in src.rglob("*") if p.is_file())
    for path in sorted(files, key=lambda p: p.relative_to(src).as_posix() in LAST_COPIED):
        with atomic_output(dst / path.relative_to(src)) as tmp:
            shutil.copyfile(path, tmp)
    return dst


def evaluate(cfg: DictConfig) -> Evaluation:
    """The function behind ``python -m recoml.evaluate``."""

    paths = _as_list(cfg.get("predictions"))
    output = cfg.get("output")
    if output and Path(output).exists() and not cfg.get("overwrite", False):
        raise DataError(f"output: {output} already exists; set overwrite=true to replace it")
    out_dir = Path(cfg.paths.output_dir)
    save_config(cfg, out_dir)
    # An empty or null `options` means the evaluators' defaults.
    options = config_dict(cfg.options) if cfg.get("options") else {}
    result = evaluate_files(
        paths,
        out_dir,
        labels=_as_list(cfg.get("labels")) or None,
        kind=cfg.get("kind"),
        options=options,
        style=cfg.get("plot_style"),
        require_same_events=bool(cfg.get("require_same_events", True)),
    )
    loggers = instantiate_group(cfg.get("logger"))
    if loggers:
        log_figures(loggers, logged_figures(result), [result.report, result.metrics])
        for logger in loggers:
            logger.finalize("success")
    if output:
        copy_outputs(out_dir, Path(output), bool(cfg.get("overwrite", False)))
        log.info("copied the evaluation to %s", output)
    return result


def logged_figures(result: Evaluation) -> dict[str, Path]:
    """The evaluation's PNG figures by a name unique in the run (``<section>/<figure>``)."""
    root = result.directory / "plots"
    return {png.relative_to(root).with_suffix("").as_posix(): png for png in sorted(root.rglob("*.png"))}
