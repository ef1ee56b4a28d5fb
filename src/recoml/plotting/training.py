"""Loss and metric curves of a training run, read from the CSV logger's ``metrics.csv``.

Rows are Lightning's: ``epoch``, ``step`` (optimizer steps so far) and one column per logged key, empty
where a row does not log it. Training losses are logged every ``log_every_n_steps`` steps, validation
metrics once per epoch (at the epoch's last step); both are drawn against epochs, the step-level points at
their fraction of the epoch, so that the validation point of epoch ``e`` sits at ``e + 1`` (epochs done).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from recoml.plotting.style import figure, finish

#: Columns that are bookkeeping, not curves.
_INDEX = ("epoch", "step")


def steps_per_epoch(frame: pd.DataFrame) -> float | None:
    """Optimizer steps per epoch, from the rows that close an epoch (validation rows), else None."""
    val = [c for c in frame.columns if c.startswith("val/")]
    if not val:
        return None
    closing = frame.dropna(subset=val, how="all")
    if closing.empty:
        return None
    last = closing.iloc[-1]
    return float(last["step"] + 1) / float(last["epoch"] + 1)


def curve_groups(frame: pd.DataFrame) -> dict[str, list[str]]:
    """Panels: ``loss`` (train/loss, val/loss), one per other validation metric (with its training twin
    when there is one), and ``learning rate`` (LearningRateMonitor's ``lr-*`` columns)."""
    columns = [c for c in frame.columns if c not in _INDEX and frame[c].notna().any()]
    groups: dict[str, list[str]] = {}
    losses = [c for c in columns if c.split("/", 1)[0] in ("train", "val") and c.endswith("/loss")]
    if losses:
        groups["loss"] = losses
    for col in columns:
        stage, _, name = col.partition("/")
        if stage == "val" and name != "loss":
            groups[name] = [c for c in (f"train/{name}", col) if c in columns]
    rates = [c for c in columns if c.startswith("lr-")]
    if rates:
        groups["learning rate"] = rates
    return groups


def plot_training_curves(frame: pd.DataFrame, per_epoch: float | None = None, title: str = ""):
    """One panel per group of :func:`curve_groups`, against epochs; ``per_epoch``: optimizer steps per
    epoch (default: from the validation rows; without them the x axis is the optimizer step)."""
    groups = curve_groups(frame)
    if not groups:
        raise ValueError("metrics.csv holds no training or validation values yet")
    per_epoch = per_epoch or steps_per_epoch(frame)
    ncols = min(3, len(groups))
    nrows = math.ceil(len(groups) / ncols)
    fig, axes = figure(ncols=ncols, nrows=nrows, scale=(0.8, 0.8))
    for ax, (name, columns) in zip(axes, groups.items(), strict=False):
        for col in columns:
            rows = frame[frame[col].notna()]
            steps = rows["step"].to_numpy(dtype=float) + 1.0
            x = steps / per_epoch if per_epoch else steps
            style = {"marker": "o", "markersize": 4} if col.startswith("val/") else {"alpha": 0.8}
            ax.plot(x, rows[col].to_numpy(dtype=float), label=col, **style)
        ax.set_xlabel("epoch" if per_epoch else "optimizer step")
        ax.set_ylabel(name)
        if name == "learning rate" or (name == "loss" and _spans_decades(frame, columns)):
            ax.set_yscale("log")
        ax.legend(fontsize="small")
    for ax in axes[len(groups) :]:
        ax.set_visible(False)
    return finish(fig, title)


def _spans_decades(frame: pd.DataFrame, columns: list[str]) -> bool:
    """True when the positive values span more than two decades (a loss falling from 10 to 0.05)."""
    values = frame[columns].to_numpy(dtype=float).ravel()
    values = values[np.isfinite(values) & (values > 0)]
    return values.size > 1 and values.max() / values.min() > 100
