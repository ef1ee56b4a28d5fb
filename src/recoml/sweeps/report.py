"""What a study leaves behind: a trials table (CSV + markdown) and its plots (PNG + PDF, recoml's style).

Written by every worker when it finishes (temporary names, then renames), so the files always describe
the whole study as the storage holds it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from recoml.io.atomic import atomic_output, write_text
from recoml.plotting import apply_style, figure, finish, save_figure
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


#: Below this many completed trials the importances are flagged as unreliable (fANOVA on few points).
MIN_TRIALS_FOR_IMPORTANCES = 20


def _values(study: optuna.Study) -> tuple[list[FrozenTrial], np.ndarray]:
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return complete, np.array([t.value for t in complete], dtype=float)


def plot_history(study: optuna.Study, objective: str):
    """Objective of every completed trial (points) and the best so far (steps), integer trial ticks."""
    from matplotlib.ticker import MaxNLocator

    complete, values = _values(study)
    numbers = np.array([t.number for t in complete])
    best = (
        np.minimum.accumulate(values)
        if study.direction == StudyDirection.MINIMIZE
        else np.maximum.accumulate(values)
    )
    fig, (ax,) = figure()
    ax.plot(numbers, values, "o", color="C0", label=f"completed trials ({len(complete)})")
    ax.step(numbers, best, where="post", color="C1", label="best so far")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("trial")
    ax.set_ylabel(objective)
    ax.legend(loc="best")
    return finish(fig, f"{study.study_name}: optimisation history")


def plot_importances(study: optuna.Study, objective: str):
    """fANOVA parameter importances as horizontal bars; a warning in the figure below
    :data:`MIN_TRIALS_FOR_IMPORTANCES` completed trials."""

    complete, _ = _values(study)
    importances = optuna.importance.get_param_importances(study)
    names = list(importances)[::-1]
    fig, (ax,) = figure()
    ax.barh(range(len(names)), [importances[n] for n in names], color="C0")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel(f"importance for {objective} (fANOVA, sums to 1)")
    if len(complete) < MIN_TRIALS_FOR_IMPORTANCES:
        log.warning(
            "importances from %d completed trials are unreliable (fewer than %d)",
            len(complete),
            MIN_TRIALS_FOR_IMPORTANCES,
        )
        ax.set_xlabel(
            f"importance for {objective} (fANOVA, sums to 1)\n"
            f"only {len(complete)} completed trials: unreliable below ~{MIN_TRIALS_FOR_IMPORTANCES}"
        )
    return finish(fig, f"{study.study_name}: parameter importances")


def plot_parallel(study: optuna.Study, objective: str):
    """One vertical axis per parameter (scaled to its range; log parameters in log; categories by index),
    one line per completed trial coloured by the objective; each axis says its range."""
    import matplotlib.pyplot as plt

    complete, values = _values(study)
    names = list(dict.fromkeys(k for t in complete for k in t.params))
    fig, (ax,) = figure(scale=(max(1.0, 0.35 * len(names)), 1.0))
    columns, ticks = [], []
    for name in names:
        dist = next(t.distributions[name] for t in complete if name in t.distributions)
        raw = [t.params.get(name) for t in complete]
        if isinstance(dist, optuna.distributions.CategoricalDistribution):
            x = np.array([dist.choices.index(v) if v in dist.choices else np.nan for v in raw], dtype=float)
            lo, hi, label = 0.0, float(max(len(dist.choices) - 1, 1)), "/".join(map(str, dist.choices))
        else:
            x = np.array([np.nan if v is None else float(v) for v in raw])
            if getattr(dist, "log", False):
                x = np.log10(x)
            lo, hi = float(np.nanmin(x)), float(np.nanmax(x))
            shown = (10**lo, 10**hi) if getattr(dist, "log", False) else (lo, hi)
            label = f"{shown[0]:.3g} .. {shown[1]:.3g}" + (" (log)" if getattr(dist, "log", False) else "")
        columns.append((x - lo) / (hi - lo) if hi > lo else np.full_like(x, 0.5))
        ticks.append(f"{name}\n{label}")
    data = np.stack(columns, 1) if columns else np.zeros((len(complete), 0))
    norm = plt.Normalize(float(values.min()), float(values.max()))
    for row, value in zip(data, values):
        ax.plot(range(len(names)), row, color=plt.cm.viridis(norm(value)), alpha=0.8)
    for i in range(len(names)):
        ax.axvline(i, color="0.6", linewidth=0.8)
    ax.set_xticks(range(len(names)), ticks, fontsize="small")
    ax.set_ylabel("position in the parameter's range")
    ax.set_ylim(-0.05, 1.05)
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap="viridis"), ax=ax, label=objective)
    return finish(fig, f"{study.study_name}: parallel coordinates ({len(complete)} trials)")


def write_plots(study: optuna.Study, out_dir: Path, objective: str, style: str | None = None) -> list[Path]:
    """Optimisation history, parameter importances and parallel coordinates as PNG + PDF, in recoml's
    plot style (``style``: an mplhep style or None), each one that can be drawn.

    Importances need at least two completed trials over parameters that vary; a plot that cannot be
    drawn yet is skipped with a log line, not an error.
    """

    out_dir.mkdir(parents=True, exist_ok=True)
    apply_style(style)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    plots: dict[str, tuple[Callable[..., Any], int]] = {
        "optimization_history": (plot_history, 1),
        "param_importances": (plot_importances, 2),
        "parallel_coordinate": (plot_parallel, 1),
    }
    written = []
    for name, (plot, needed) in plots.items():
        if len(complete) < needed:
            log.info(
                "plot %s skipped: needs %d completed trials, the study has %d", name, needed, len(complete)
            )
            continue
        try:
            fig = plot(study, objective)
        except (ValueError, RuntimeError, ZeroDivisionError) as err:
            log.info("plot %s skipped: %s", name, err)
            continue
        written.append(save_figure(fig, out_dir, name)["png"])
    return written
