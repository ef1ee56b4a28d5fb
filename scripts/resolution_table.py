"""Issue 13 item 5: a network's resolutions on the toy next to classical baselines on the same events and
the published WatChMaL Hyper-K ResNet figures (docs/physics.md, "Vertex and energy tasks on the toy").

    python scripts/resolution_table.py <predictions> [<predictions> ...] --output <dir> [--n-calibration N]

Each ``<predictions>`` is a recoml predictions file (or a predict run directory) over the same events, e.g.
a multi-task run (pid + energy + direction) and a vertex run. The first one names the events: the classical
baselines (``recoml.families.water_cherenkov.baselines``) are written for them, once from the fitted vertex
and once from the true vertex (an upper bound for direction and e/mu), then every task kind is evaluated
with ``recoml.evaluation.run.evaluate_files`` (network and baselines overlaid, in ``<dir>/<run>_<kind>/``)
and ``<dir>/table.md`` gets one row per quantity, every number read from those evaluations.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import h5py
import numpy as np

from recoml.evaluation.run import evaluate_files
from recoml.families.water_cherenkov.baselines import write_classical_predictions
from recoml.prediction.reader import Predictions, predictions_file

#: arXiv:2604.13503 (A. Atta, N. Prouse et al., "Enhancing Event Reconstruction in Hyper-Kamiokande with
#: Machine Learning: A ResNet Implementation", WatChMaL ResNets on WCSim Hyper-K single particles from
#: Cherenkov threshold to 2 GeV above it, averaged over that range): abstract.
PUBLISHED = "WatChMaL HK ResNet (arXiv:2604.13503)"
#: (row, evaluation kind, metric of recoml.evaluate's metrics.json, scale, unit, published value)
ROWS = (
    ("momentum, mu", "energy", "resolution_momentum/mu", 100.0, "%", "1.35 %"),
    ("momentum, e", "energy", "resolution_momentum/e", 100.0, "%", "2.39 %"),
    ("kinetic energy, mu", "energy", "resolution_fractional/mu", 100.0, "%", "-"),
    ("kinetic energy, e", "energy", "resolution_fractional/e", 100.0, "%", "-"),
    ("direction, mu", "direction", "resolution_angle_deg/mu", 1.0, "deg", "1.25 deg"),
    ("direction, e", "direction", "resolution_angle_deg/e", 1.0, "deg", "1.94 deg"),
    ("vertex, mu", "vertex", "resolution_total_cm/mu", 1.0, "cm", "28.2 cm"),
    ("vertex, e", "vertex", "resolution_total_cm/e", 1.0, "cm", "25.4 cm"),
    ("e/mu ROC AUC", "classification", "e_vs_mu/auc", 1.0, "", "0.9999992"),
    ("e/gamma ROC AUC", "classification", "e_vs_gamma/auc", 1.0, "", "0.633"),
)
CLASSICAL, TRUE_VERTEX = "classical", "classical_true_vertex"
OPTIONS = {"displays": False, "pairs": [["e", "mu"], ["e", "gamma"]]}
#: ``{kind: {run: metrics}}``, runs ``network``, :data:`CLASSICAL`, :data:`TRUE_VERTEX`.
Results = dict[str, dict[str, dict[str, float]]]


def _fmt(value: float | None, unit: str) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    text = f"{value:.4f}" if not unit else f"{value:.3g}"
    return f"{text} {unit}".rstrip()


def _same_events(a: Path, b: Path) -> bool:
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        return bool(np.array_equal(fa["event_index"][()], fb["event_index"][()]))


def evaluate_all(paths: list[Path], output: Path, n_calibration: int, reuse: bool = False) -> Results:
    """``{kind: {run label: metrics}}`` over every network file and both baselines; ``reuse``: keep baseline
    files already in ``output`` that cover the same events as ``paths[0]``."""
    baselines = {}
    for name, true_vertex in ((CLASSICAL, False), (TRUE_VERTEX, True)):
        path = output / f"{name}.h5"
        if not (reuse and path.is_file() and _same_events(path, paths[0])):
            write_classical_predictions(
                paths[0], path, n_calibration, overwrite=True, true_vertex=true_vertex
            )
        baselines[name] = path
    kinds_of = {label: set(Predictions(p).kinds) for label, p in baselines.items()}
    results: Results = {}
    for index, path in enumerate(paths):
        label = f"network{index}" if len(paths) > 1 else "network"
        for kind in sorted(set(Predictions(path).kinds)):
            extra = [name for name, kinds in kinds_of.items() if kind in kinds]
            files = [path, *(baselines[name] for name in extra)]
            evaluation = evaluate_files(
                files, output / f"{label}_{kind}", labels=[label, *extra], kind=kind, options=OPTIONS
            )
            section = next(iter(evaluation.sections))
            for run in [label, *extra]:
                results.setdefault(kind, {})[run if run in extra else "network"] = evaluation.scalars(
                    section, run
                )
    return results


def table(results: Results) -> str:
    """The markdown table of :data:`ROWS` (``-`` where a run has no such result)."""
    lines = [
        f"| quantity (68% of abs. residual) | toy ML | classical (fitted vertex) | classical (true vertex) | "
        f"{PUBLISHED} |",
        "|---|---|---|---|---|",
    ]
    for name, kind, metric, scale, unit, published in ROWS:
        cells = []
        for run in ("network", CLASSICAL, TRUE_VERTEX):
            value = results.get(kind, {}).get(run, {}).get(metric)
            cells.append(_fmt(None if value is None else value * scale, unit))
        lines.append(f"| {name} | {' | '.join(cells)} | {published} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("predictions", nargs="+", help="recoml predictions files or predict run directories")
    parser.add_argument("--output", required=True, type=Path)
    parser.add_argument("--n-calibration", type=int, default=1000)
    parser.add_argument(
        "--reuse-baselines", action="store_true", help="keep baseline files of the same events in --output"
    )
    args = parser.parse_args(argv)
    output: Path = args.output
    output.mkdir(parents=True, exist_ok=True)
    paths = [predictions_file(p) for p in args.predictions]
    results = evaluate_all(paths, output, args.n_calibration, args.reuse_baselines)
    (output / "results.json").write_text(json.dumps(results, indent=1, sort_keys=True))
    text = table(results)
    (output / "table.md").write_text(text)
    print(text, end="")
    return output / "table.md"


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
