"""What a study leaves behind: a trials table (CSV + markdown) and Optuna's plots as PNG.

Written by every worker when it finishes (temporary names, then renames), so the files always describe
the whole study as the storage holds it.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from recoml.io.atomic import atomic_output, write_text
from recoml.sweeps.tables import to_markdown

log = logging.getLogger(__name__)

#: Order of trial states in the table: completed (best first), then the rest.
_STATE_ORDER = {TrialState.COMPLETE: 0, TrialState.PRUNED: 1, TrialState.FAIL: 2, TrialState.RUNNING: 3}


def trials_table(study: optuna.Study, objective: str) -> pd.DataFrame:
    """One row per trial: number, state, objective, parameters, duration, error, run directory."""
    trials = study.get_trials(deepcopy=False)
    keys = list(dict.fromkeys(k for t in trials for k in t.params))
    sign = -1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0

    def order(t: FrozenTrial) -> tuple:
        value = t.value if t.value is not None and math.isfinite(t.value) else math.inf * sign
        return (_STATE_ORDER.get(t.state, 4), sign * value, t.number)

    rows: list[dict[str, Any]] = []
    for t in sorted(trials, key=order):
        started, done = t.datetime_start, t.datetime_complete
        duration = (done - started).total_seconds() if done and started else None
        last = max(t.intermediate_values) if t.intermediate_values else None
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name,
                objective: t.value,
                **{k: t.params.get(k) for k in keys},
                "epochs_reported": None if last is None else last + 1,
                "duration_s": None if duration is None else round(duration, 1),
                "error": t.user_attrs.get("error", ""),
                "run_dir": t.user_attrs.get("run_dir", ""),
            }
        )
    columns = ["trial", "state", objective, *keys, "epochs_reported", "duration_s", "error", "run_dir"]
    return pd.DataFrame(rows, columns=columns)


def write_table(frame: pd.DataFrame, stem: Path, title: str = "") -> tuple[Path, Path]:
    """``<stem>.csv`` and ``<stem>.md``, each written under a temporary name and renamed."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    csv, md = stem.with_suffix(".csv"), stem.with_suffix(".md")
    with atomic_output(csv) as tmp:
        frame.to_csv(tmp, index=False)
    write_text(md, (f"# {title}\n\n" if title else "") + to_markdown(frame))
    return csv, md


def write_plots(study: optuna.Study, out_dir: Path, objective: str) -> list[Path]:
    """Optimisation history, parameter importances and parallel coordinates as PNG (those that can be drawn).

    Importances need at least two completed trials over parameters that vary; a plot that cannot be
    drawn yet is skipped with a log line, not an error.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    out_dir.mkdir(parents=True, exist_ok=True)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    plots: dict[str, tuple[Callable[..., Any], int]] = {
        "optimization_history": (ovm.plot_optimization_history, 1),
        "param_importances": (ovm.plot_param_importances, 2),
        "parallel_coordinate": (ovm.plot_parallel_coordinate, 1),
    }
    written = []
    for name, (plot, needed) in plots.items():
        if len(complete) < needed:
            log.info(
                "plot %s skipped: needs %d completed trials, the study has %d", name, needed, len(complete)
            )
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
                axes = plot(study, target_name=objective)
        except (ValueError, RuntimeError, ZeroDivisionError) as err:
            log.info("plot %s skipped: %s", name, err)
            continue
        figure = _figure(axes)
        path = out_dir / f"{name}.png"
        try:
            with atomic_output(path) as tmp:
                figure.savefig(tmp, dpi=120, bbox_inches="tight")
        finally:
            plt.close(figure)
        written.append(path)
    return written


def _figure(axes: Any):
    """The figure behind what an Optuna plot returns (one Axes, or an array of them)."""
    if hasattr(axes, "figure"):
        return axes.figure
    first: Sequence = axes.flat if hasattr(axes, "flat") else axes
    return next(iter(first)).figure
