"""Energy, vertex and direction regression: residual distributions, resolution (68% of |residual|) and
bias vs true energy, with the definitions of :mod:`recoml.metrics.physics`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from recoml.evaluation.registry import Evaluator, PlotSink, SectionResult, register
from recoml.metrics import physics as pm
from recoml.plotting import Series, edges_for, plot_histograms, plot_panels
from recoml.prediction.reader import SectionData

ENERGY_LABEL = "true energy [MeV]"


def _energy_axis(run: SectionData) -> np.ndarray | None:
    for name in ("aux_energy", "true_energy"):
        if run.has(name):
            return np.asarray(run.get(name), dtype=np.float64).reshape(-1)
    return None


def _jsonable(d: dict[str, np.ndarray]) -> dict[str, list[float]]:
    return {k: [float(x) for x in np.asarray(v)] for k, v in d.items()}


class _Regression(Evaluator):
    """Shared machinery: named residuals per run, summary numbers, binned in true energy, plots.

    Subclasses implement :meth:`residuals` -> ``{name: (values, unit, signed)}``; signed residuals get a
    bias, unsigned ones (angles, distances) only a resolution.
    """

    higher_is_better = False
    #: axis labels of residual names
    labels: dict[str, str] = {}

    def residuals(self, run: SectionData) -> dict[str, tuple[np.ndarray, str, bool]]:
        raise NotImplementedError

    def prepare(self, runs: Sequence[SectionData]) -> None:
        axes = [_energy_axis(r) for r in runs]
        known = [a for a in axes if a is not None]
        n_bins = int(self.options.get("n_bins", 10))
        self.edges = edges_for(known, n_bins) if len(known) == len(axes) else None
        self.histogram_range: dict[str, tuple[float, float]] = {}
        for name in self.residuals(runs[0]):
            values = np.concatenate([np.abs(self.residuals(r)[name][0]) for r in runs])
            values = values[np.isfinite(values)]
            self.histogram_range[name] = (0.0, float(np.quantile(values, 0.98)) if len(values) else 1.0)

    def evaluate(self, run: SectionData) -> SectionResult:
        res = SectionResult()
        energy = _energy_axis(run)
        for name, (values, unit, signed) in self.residuals(run).items():
            suffix = f"_{unit}" if unit else ""
            res.scalars[f"resolution_{name}{suffix}"] = pm.resolution(values)
            if signed:
                res.scalars[f"bias_{name}{suffix}"] = pm.bias(values)
            res.curves[name] = values
            if self.edges is not None and energy is not None:
                res.tables[f"{name}_vs_energy"] = _jsonable(pm.binned_resolution(energy, values, self.edges))
        return res

    def plot(self, runs, results, sink: PlotSink, section: str) -> None:
        for name, (_, unit, signed) in self.residuals(runs[0]).items():
            xlabel = self.labels.get(name, name) + (f" [{unit}]" if unit else "")
            lo, hi = self.histogram_range[name]
            bins = np.linspace(-hi if signed else 0.0, hi, 61)
            samples = [(r.label, res.curves[name], i) for i, (r, res) in enumerate(zip(runs, results))]
            sink.save(
                plot_histograms(samples, bins, xlabel, title=f"{section}: residual"),
                section,
                f"residual_{name}",
                f"Residual: {self.labels.get(name, name)}",
            )
            table = f"{name}_vs_energy"
            if not all(table in res.tables for res in results):
                continue
            res_series = [
                Series(
                    r.label,
                    np.asarray(res.tables[table]["centers"]),
                    np.asarray(res.tables[table]["resolution"]),
                    np.asarray(res.tables[table]["resolution_error"]),
                    i,
                )
                for i, (r, res) in enumerate(zip(runs, results))
            ]
            panels: list[dict[str, Any]] = [
                {"series": res_series, "xlabel": ENERGY_LABEL, "ylabel": f"resolution (68%) of {xlabel}"}
            ]
            if signed:
                bias_series = [
                    Series(
                        r.label,
                        np.asarray(res.tables[table]["centers"]),
                        np.asarray(res.tables[table]["bias"]),
                        np.asarray(res.tables[table]["bias_error"]),
                        i,
                    )
                    for i, (r, res) in enumerate(zip(runs, results))
                ]
                panels.append(
                    {
                        "series": bias_series,
                        "xlabel": ENERGY_LABEL,
                        "ylabel": f"bias (mean) of {xlabel}",
                        "hline": 0.0,
                    }
                )
            sink.save(
                plot_panels(panels, title=f"{section}: {self.labels.get(name, name)} vs true energy"),
                section,
                f"resolution_vs_energy_{name}",
                f"Resolution{' and bias' if signed else ''} vs true energy: {self.labels.get(name, name)}",
            )

    def highlights(self, run: SectionData, result: SectionResult) -> list[tuple[int, str]]:
        """The events with the smallest and the largest main residual (the first one)."""
        name, (values, unit, _) = next(iter(self.residuals(run).items()))
        values = np.abs(np.asarray(values, dtype=np.float64).reshape(-1))
        index = np.asarray(run.get("event_index"), dtype=np.int64)
        ok = np.flatnonzero(np.isfinite(values))
        if not len(ok):
            return []
        label = self.labels.get(name, name)
        return [
            (int(index[row]), f"{what}: |{label}| = {values[row]:.3g} {unit}".rstrip())
            for what, row in (("best", ok[np.argmin(values[ok])]), ("worst", ok[np.argmax(values[ok])]))
        ]


@register("energy")
class EnergyEvaluator(_Regression):
    """Fractional energy residual ``(E_pred - E_true) / E_true``."""

    required = ("pred_energy", "true_energy")
    main_metric = "resolution_fractional"
    labels = {"fractional": "(E_pred - E_true) / E_true"}

    def residuals(self, run: SectionData) -> dict[str, tuple[np.ndarray, str, bool]]:
        return {
            "fractional": (pm.fractional_residual(run.get("pred_energy"), run.get("true_energy")), "", True)
        }


@register("vertex")
class VertexEvaluator(_Regression):
    """Vertex residual: 3D distance, and (with the true direction) longitudinal and transverse parts."""

    required = ("pred_position", "true_position")
    main_metric = "resolution_total_cm"
    labels = {
        "total": "|v_pred - v_true|",
        "longitudinal": "longitudinal vertex residual",
        "transverse": "transverse vertex residual",
    }

    def residuals(self, run: SectionData) -> dict[str, tuple[np.ndarray, str, bool]]:
        direction = run.get("aux_direction") if run.has("aux_direction") else None
        r = pm.vertex_residuals(run.get("pred_position"), run.get("true_position"), direction)
        out = {"total": (r["total"], "cm", False)}
        if direction is not None:
            out["longitudinal"] = (r["longitudinal"], "cm", True)
            out["transverse"] = (r["transverse"], "cm", False)
        return out


@register("direction")
class DirectionEvaluator(_Regression):
    """Angle between predicted and true direction; signed biases of the polar and azimuth angles."""

    required = ("pred_direction", "true_direction")
    main_metric = "resolution_angle_deg"
    labels = {
        "angle": "angle to true direction",
        "polar": "polar angle residual",
        "azimuth": "azimuth residual",
    }

    def residuals(self, run: SectionData) -> dict[str, tuple[np.ndarray, str, bool]]:
        pred = np.asarray(run.get("pred_direction"), dtype=np.float64).reshape(-1, 3)
        true = np.asarray(run.get("true_direction"), dtype=np.float64).reshape(-1, 3)
        out = {"angle": (pm.angle_between(pred, true), "deg", False)}
        p_pol, t_pol = (
            np.degrees(np.arccos(np.clip(v[:, 1] / np.linalg.norm(v, axis=1), -1, 1))) for v in (pred, true)
        )
        p_az, t_az = (np.degrees(np.arctan2(v[:, 2], v[:, 0])) for v in (pred, true))
        out["polar"] = (p_pol - t_pol, "deg", True)
        out["azimuth"] = ((p_az - t_az + 180.0) % 360.0 - 180.0, "deg", True)
        return out
