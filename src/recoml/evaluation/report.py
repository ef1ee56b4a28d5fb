"""``report.md`` (every figure, a metrics table per section) and ``metrics.json`` of an evaluation."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from recoml.evaluation.registry import FigureRecord, SectionResult
from recoml.io.atomic import write_text
from recoml.metrics.physics import LowerLimit

DEFINITIONS = {
    "selection": "an event (hit) is selected when its score >= the cut",
    "roc": "signal efficiency vs background efficiency over all cuts; AUC = trapezoidal area",
    "pair_discriminant": "p_signal / (p_signal + p_background), on events whose truth is one of the pair",
    "rejection@X%": (
        "1 / background efficiency at the tightest cut keeping >= X% of the signal; '> N+1' (a lower limit, "
        "listed in lower_limits) when none of the N background events passes"
    ),
    "working_point": "cut on the discriminant that keeps the configured signal efficiency overall",
    "resolution": "68% quantile of |residual|",
    "bias": "mean of the signed residual",
    "energy_residual": "(E_pred - E_true) / E_true",
    "vertex_residual": (
        "longitudinal = r . d_true (signed), transverse = |r - (r . d_true) d_true|, total = |r|"
    ),
    "direction_residual": "angle between predicted and true direction, degrees",
    "hit_efficiency_purity": "efficiency = TP / (TP + FN), purity = TP / (TP + FP) at the working point",
    "dwall": "distance from the true vertex to the nearest tank wall",
    "edge_efficiency_purity": (
        "edges with score > the cut: efficiency = target edges kept / target edges in the graph, purity = "
        "true edges kept / edges kept; edge AUC: target edges against false edges (docs/tracking.md)"
    ),
    "track_matching": (
        "double majority: track purity > 0.5 and completeness > 0.5; ATLAS: purity >= the fraction (0.5)"
    ),
    "track_rates": (
        "efficiency = matched target particles / targets; fake rate = unmatched tracks / tracks "
        "(estimated pT > pt_min); duplicate rate = (matched tracks - particles they match) / matched tracks"
    ),
}


def _fmt(value: Any) -> str:
    if isinstance(value, LowerLimit):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if math.isinf(value):
            return "inf"
        return f"{value:.4g}"
    return str(value)


def _finite(value: Any) -> Any:
    """JSON has no NaN/inf: write them as null / strings."""
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _write(path: Path, text: str) -> None:
    write_text(path, text)


def write_metrics_json(
    path: Path,
    runs: Sequence[dict[str, Any]],
    sections: dict[str, dict[str, Any]],
    figures: Sequence[FigureRecord],
) -> Path:
    payload = {
        "runs": runs,
        "definitions": DEFINITIONS,
        "sections": {
            name: {
                "kind": s["kind"],
                "metrics": {label: res.scalars for label, res in s["results"].items()},
                "tables": {label: res.tables for label, res in s["results"].items()},
                "lower_limits": {
                    label: [k for k, v in res.scalars.items() if isinstance(v, LowerLimit)]
                    for label, res in s["results"].items()
                },
            }
            for name, s in sections.items()
        },
        "figures": [
            {"section": f.section, "title": f.title, **{k: str(v.name) for k, v in f.files.items()}}
            for f in figures
        ],
    }
    _write(path, json.dumps(_finite(payload), indent=2) + "\n")
    return path


def _table(results: dict[str, SectionResult]) -> list[str]:
    labels = list(results)
    names = list(dict.fromkeys(k for res in results.values() for k in res.scalars))
    lines = ["| metric | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for name in names:
        row = [_fmt(results[label].scalars.get(name, float("nan"))) for label in labels]
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    return lines


def _figure_lines(figures: Sequence[FigureRecord], plots_dir: str) -> list[str]:
    """Each figure: a heading, its caption, the PNG inline and a link to every other format."""
    lines: list[str] = []
    for f in figures:
        lines += [f"### {f.title}", ""]
        if f.caption:
            lines += [f"_{f.caption}_", ""]
        if "png" in f.files:
            lines += [f"![{f.title}]({plots_dir}/{f.files['png'].name})", ""]
        links = [f"[{fmt.upper()}]({plots_dir}/{path.name})" for fmt, path in f.files.items() if fmt != "png"]
        lines += [" ".join(links), ""] if links else []
    return lines


def write_report(
    path: Path,
    runs: Sequence[dict[str, Any]],
    sections: dict[str, dict[str, Any]],
    figures: Sequence[FigureRecord],
    plots_dir: str = "plots",
    notes: Sequence[str] = (),
) -> Path:
    """Markdown: the runs compared, then per section its metrics table and every figure (PNG inline, PDF
    linked), then the metric definitions."""
    title = (
        "recoml evaluation"
        if len(runs) == 1
        else "recoml comparison: " + " vs ".join(r["label"] for r in runs)
    )
    lines = [
        f"# {title}",
        "",
        "| run | predictions | task | model | detector | split | events | checkpoint |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        lines.append(
            f"| {r['label']} | `{r['path']}` | {r.get('task')} | {r.get('model')} | {r.get('detector')} | "
            f"{r.get('split')} | {r.get('n_events')} | `{r.get('checkpoint')}` |"
        )
    lines += [f"\n**Note:** {note}" for note in notes]
    for name, s in sections.items():
        what = s["kind"] + (f", {s['quantity']} energy" if s.get("quantity") else "")
        lines += ["", f"## {name} ({what})", "", *_table(s["results"]), ""]
        lines += _figure_lines([f for f in figures if f.section == name], plots_dir)
    for name in dict.fromkeys(f.section for f in figures if f.section not in sections):
        lines += ["", f"## {name}", ""] + _figure_lines([f for f in figures if f.section == name], plots_dir)
    lines += ["", "## Definitions", ""] + [f"- **{k}**: {v}" for k, v in DEFINITIONS.items()] + [""]
    _write(path, "\n".join(lines))
    return path
