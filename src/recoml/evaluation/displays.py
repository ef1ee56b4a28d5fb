"""Event displays from files: read chosen events of an event store and/or a predictions file, find their
detector, and draw them with the detector family's display (:mod:`recoml.plotting.events`).

Used by ``python -m recoml.display`` and by ``recoml.evaluate``, which draws the best, the worst and a
mis-identified event of each section (chosen by the evaluators' :meth:`~Evaluator.highlights`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from recoml.data.store import EventStore, open_store
from recoml.errors import ConfigError, DataError
from recoml.io.atomic import write_text
from recoml.plotting import apply_style
from recoml.plotting.events import EventView, draw_event
from recoml.prediction.schema import FILE_NAME
from recoml.utils.cli import save_config

__all__ = ["detector_for", "display", "draw_events", "event_views", "resolve_predictions"]

log = logging.getLogger(__name__)


def resolve_predictions(path: str | os.PathLike) -> Path:
    """A predictions file, or a run directory holding ``predictions.h5``."""

    p = Path(path)
    if p.is_dir():
        if not (p / FILE_NAME).is_file():
            raise DataError(
                f"predictions: {p} is a directory without {FILE_NAME}; "
                "give the file or a predict run directory"
            )
        return p / FILE_NAME
    if not p.is_file():
        raise DataError(f"predictions: {p} does not exist")
    return p


def _detector_config(attrs: Mapping[str, Any]) -> Any:
    config = attrs.get("config")
    return config.get("detector") if isinstance(config, Mapping) else None


def detector_for(chosen: Any, *attrs: Mapping[str, Any]) -> Any:
    """The detector: the ``detector`` config group when chosen, else the one recorded in the first file
    attributes (predictions or store) that have one; ConfigError when none does."""
    config = chosen if chosen is not None else next((c for a in attrs if (c := _detector_config(a))), None)
    if config is None:
        raise ConfigError(
            "display: the files name no detector; choose one with detector=<name> (recoml/conf/detector)"
        )
    return instantiate(config)


def _row(store: EventStore, row: int) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]]]:
    """One event of a store: its per-event fields and its objects (``{type: {field: flat array}}``)."""
    per_event = {k: np.asarray(store.array(k)[row]) for k in store.event_fields}
    objects = {t: store.read([row], None, (), object_type=t)[0] for t in store.object_types}
    return per_event, objects


def event_views(
    rows: Sequence[int],
    data: str | os.PathLike | None = None,
    predictions: str | os.PathLike | None = None,
    captions: Sequence[str] | None = None,
) -> list[EventView]:
    """Events ``rows`` (rows of the event store) with their hits and truth from ``data`` (default: the
    store the predictions were made from) and their predictions, if a predictions file is given."""
    pred_store = open_store(resolve_predictions(predictions)) if predictions else None
    if data is None:
        if pred_store is None:
            raise ConfigError(
                "display: give data=<event store> or predictions=<predictions file or run directory>"
            )
        data = pred_store.attrs.get("dataset")
    store = open_store(data) if data and Path(str(data)).is_file() else None
    if store is None and pred_store is None:
        raise DataError(f"data: event store {data} does not exist")
    pred_rows = {}
    if pred_store is not None:
        index = np.asarray(pred_store.array("event_index"), dtype=np.int64)
        pred_rows = {int(e): i for i, e in enumerate(index)}
    views = []
    for k, row in enumerate(rows):
        row = int(row)
        view = EventView(index=row, caption=captions[k] if captions else "")
        if store is not None:
            if not 0 <= row < store.n_events:
                raise ConfigError(
                    f"events: {row} is not an event of {store.path} (0 .. {store.n_events - 1})"
                )
            view.truth, objects = _row(store, row)
            view.hits = objects.get("hits", {})
        if pred_store is not None:
            if row not in pred_rows:
                raise ConfigError(
                    f"events: event {row} is not in {pred_store.path} (it holds {len(pred_rows)} events "
                    f"of split '{pred_store.attrs.get('split')}')"
                )
            view.predicted, view.objects = _row(pred_store, pred_rows[row])
            view.sections = list(pred_store.attrs.get("sections") or [])
        views.append(view)
    return views


def draw_events(
    views: Sequence[EventView], detector: Any, directory: str | os.PathLike, html: bool = True
) -> list[tuple[str, dict[str, Path]]]:
    """Every view drawn into ``directory``; ``(title, files)`` of everything written."""
    out = []
    for view in views:
        out += draw_event(view, detector, directory, html=html)
    return out


def _first_rows(data: Any, predictions: Any, n: int) -> list[int]:
    if predictions:
        index = np.asarray(open_store(resolve_predictions(predictions)).array("event_index"), dtype=np.int64)
        return [int(i) for i in index[:n]]
    return list(range(min(n, open_store(data).n_events)))


def display(cfg: DictConfig) -> list[tuple[str, dict[str, Path]]]:
    """The function behind ``python -m recoml.display``: displays in ``<run dir>/displays`` and an index
    ``displays.md``."""

    data, predictions = cfg.get("data"), cfg.get("predictions")
    if not data and not predictions:
        raise ConfigError(
            "display: give data=<event store> or predictions=<predictions file or run directory>"
        )
    rows = cfg.get("events")
    rows = (
        list(cast(list[Any], OmegaConf.to_container(rows)))  # a ListConfig converts to a list
        if OmegaConf.is_list(rows)
        else (
            [int(rows)] if rows is not None else _first_rows(data, predictions, int(cfg.get("n_events", 3)))
        )
    )
    views = event_views(rows, data, predictions)
    attrs = []
    if predictions:
        attrs.append(open_store(resolve_predictions(predictions)).attrs)
    if data:
        attrs.append(open_store(data).attrs)
    elif predictions and attrs[0].get("dataset") and Path(attrs[0]["dataset"]).is_file():
        attrs.append(open_store(attrs[0]["dataset"]).attrs)
    detector = detector_for(cfg.get("detector"), *attrs)
    out_dir = Path(cfg.paths.output_dir)
    save_config(cfg, out_dir)
    apply_style(cfg.get("plot_style"))
    written = draw_events(views, detector, out_dir / "displays", html=bool(cfg.get("html", True)))
    lines = ["# recoml event displays", ""]
    for title, files in written:
        lines.append(f"## {title}")
        for fmt, path in files.items():
            lines.append(
                f"![{title}](displays/{path.name})"
                if fmt == "png"
                else f"[{fmt.upper()}](displays/{path.name})"
            )
        lines.append("")
    index = out_dir / "displays.md"
    write_text(index, "\n".join(lines))
    log.info("displays of events %s: %s", rows, index)
    return written
