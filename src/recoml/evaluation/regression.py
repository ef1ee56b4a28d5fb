"""Energy, vertex and direction regression: residual distributions, resolution (68% of |residual|) and
bias vs true energy, with the definitions of :mod:`recoml.metrics.physics`.

For tables comparable with WatChMaL / Hyper-K: every resolution (and bias) is also reported per species of
the true label (``resolution_<name>/<species>``: gamma, e, mu, pi0), the energy evaluator adds the fractional
momentum residual (``|p|`` from the energy and the true species' mass; option ``energy``: ``kinetic``
(default, the toy's and a particle gun's convention) or ``total``), and resolutions are binned in the true
distance to the wall (dwall, towall) as well as in energy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from recoml.evaluation.registry import Evaluator, PlotSink, SectionResult, register
from recoml.metrics import physics as pm
from recoml.plotting import Series, edges_for, plot_2d, plot_histograms, plot_panels, plot_species
from recoml.prediction.reader import SectionData

ENERGY_LABEL = "true energy [MeV]"
#: Axes the resolution and bias are binned in: (name, axis label, fields read in order of preference).
AXES = (
    ("energy", ENERGY_LABEL, ("aux_energy", "true_energy")),
    ("dwall", "true distance to wall [cm]", ("aux_dwall",)),
    ("towall", "true distance to wall along the track [cm]", ("aux_towall",)),
)
#: Stored particle labels of ``aux_label`` (docs/architecture.md), for per-species results.
SPECIES = {label: name for label, (name, _) in pm.SPECIES.items()}


def _axis(run: SectionData, fields: tuple[str, ...]) -> np.ndarray | None:
    for name in fields:
        if run.has(name):
            return np.asarray(run.get(name), dtype=np.float64).reshape(-1)
    return None


def _energy_axis(run: SectionData) -> np.ndarray | None:
    return _axis(run, AXES[0][2])


def _species(run: SectionData) -> dict[str, np.ndarray]:
    """Event mask of every species present (from ``aux_label``); empty without labels."""
    if not run.has("aux_label"):
        return {}
    label = np.asarray(run.get("aux_label")).reshape(-1)
    return {name: label == value for value, name in SPECIES.items() if np.any(label == value)}


def _jsonable(d: dict[str, np.ndarray]) -> dict[str, list[float]]:
    return {k: [float(x) for x in np.asarray(v)] for k, v in d.items()}


def _binned_series(label: str, table: dict[str, list[float]], key: str, color: int) -> Series:
    value = np.asarray(table[key], dtype=float)
    err = np.asarray(table[f"{key}_error"], dtype=float)
    err = np.where(np.isfinite(err), err, 0.0)
    return Series.binned(label, table["edges"], value, value - err, value + err, color)


class _Regression(Evaluator):
    """Shared machinery: named residuals per run, summary numbers (overall and per species), binned in
    true energy, distance to wall and towall, residual histograms, 2D reco vs true, plots.

    Subclasses implement :meth:`residuals` -> ``{name: (values, unit, signed)}``; signed residuals get a
    bias, unsigned ones (angles, distances) only a resolution; and :meth:`reco_vs_true` -> ``[(name, true,
    predicted, axis label)]`` for the 2D histograms.
    """

    higher_is_better = False
    #: axis labels of residual names
    labels: dict[str, str] = {}

    def residuals(self, run: SectionData) -> dict[str, tuple[np.ndarray, str, bool]]:
        raise NotImplementedError

    def reco_vs_true(self, run: SectionData) -> list[tuple[str, np.ndarray, np.ndarray, str]]:
        return []

    def prepare(self, runs: Sequence[SectionData]) -> None:
        n_bins = int(self.options.get("n_bins", 10))
        self.edges: dict[str, np.ndarray] = {}
        for axis, _, fields in AXES:
            known = [v for r in runs if (v := _axis(r, fields)) is not None]
            if len(known) == len(runs):
                self.edges[axis] = edges_for(known, n_bins)
        self.histogram_range: dict[str, tuple[float, float]] = {}
        for name in self.residuals(runs[0]):
            values = np.concatenate([np.abs(self.residuals(r)[name][0]) for r in runs])
            values = values[np.isfinite(values)]
            self.histogram_range[name] = (0.0, float(np.quantile(values, 0.98)) if len(values) else 1.0)
        self.reco_edges = {}
        for name, *_ in self.reco_vs_true(runs[0]):
            both = [np.r_[t, p] for r in runs for n, t, p, _ in self.reco_vs_true(r) if n == name]
            self.reco_edges[name] = edges_for(both, 50, (0.005, 0.995))

    def evaluate(self, run: SectionData) -> SectionResult:
        res = SectionResult()
        species = _species(run)
        for k, (name, (values, unit, signed)) in enumerate(self.residuals(run).items()):
            suffix = f"_{unit}" if unit else ""
            res.scalars[f"resolution_{name}{suffix}"] = pm.resolution(values)
            if signed:
                res.scalars[f"bias_{name}{suffix}"] = pm.bias(values)
            for sp, mask in species.items():
                res.scalars[f"resolution_{name}{suffix}/{sp}"] = pm.resolution(values[mask])
                if signed:
                    res.scalars[f"bias_{name}{suffix}/{sp}"] = pm.bias(values[mask])
                res.scalars[f"events/{sp}"] = float(mask.sum())
            res.curves[name] = values
            for axis, _, fields in AXES:
                x = _axis(run, fields)
                if axis not in self.edges or x is None:
                    continue
                res.tables[f"{name}_vs_{axis}"] = _jsonable(pm.binned_resolution(x, values, self.edges[axis]))
                if axis == "energy" and k == 0:  # per species: the main residual
                    res.tables[f"{name}_vs_energy_by_species"] = {
                        sp: _jsonable(pm.binned_resolution(x[m], values[m], self.edges[axis]))
                        for sp, m in species.items()
                    }
        res.curves["reco_vs_true"] = self.reco_vs_true(run)
        return res

    def _panels(self, runs, results, table: str, xlabel: str, ylabel: str, signed: bool) -> list[dict]:
        series = [
            _binned_series(r.label, res.tables[table], "resolution", i)
            for i, (r, res) in enumerate(zip(runs, results))
        ]
        panels: list[dict[str, Any]] = [
            {"series": series, "xlabel": xlabel, "ylabel": f"resolution (68%) of {ylabel}"}
        ]
        if signed:
            bias = [
                _binned_series(r.label, res.tables[table], "bias", i)
                for i, (r, res) in enumerate(zip(runs, results))
            ]
            panels.append(
                {"series": bias, "xlabel": xlabel, "ylabel": f"bias (mean) of {ylabel}", "hline": 0.0}
            )
        return panels

    def plot(self, runs, results, sink: PlotSink, section: str) -> None:
        for name, (_, unit, signed) in self.residuals(runs[0]).items():
            label = self.labels.get(name, name)
            xlabel = label + (f" [{unit}]" if unit else "")
            lo, hi = self.histogram_range[name]
            bins = np.linspace(-hi if signed else 0.0, hi, 61)
            samples = [(r.label, res.curves[name], i) for i, (r, res) in enumerate(zip(runs, results))]
            sink.save(
                plot_histograms(samples, bins, xlabel, title=f"{section}: residual"),
                section,
                f"residual_{name}",
                f"Residual: {label}",
            )
            for axis, axis_label, _ in AXES:
                table = f"{name}_vs_{axis}"
                if not all(table in res.tables for res in results):
                    continue
                what = axis_label.split(" [")[0]
                sink.save(
                    plot_panels(
                        self._panels(runs, results, table, axis_label, xlabel, signed),
                        title=f"{section}: {label} vs {what}",
                    ),
                    section,
                    f"resolution_vs_{axis}_{name}",
                    f"Resolution{' and bias' if signed else ''} vs {what}: {label}",
                )
            by_species = f"{name}_vs_energy_by_species"
            names = list(results[0].tables.get(by_species, {}))
            if len(names) > 1 and all(set(res.tables.get(by_species, {})) == set(names) for res in results):
                species = {
                    sp: [
                        _binned_series(r.label, res.tables[by_species][sp], "resolution", i)
                        for i, (r, res) in enumerate(zip(runs, results))
                    ]
                    for sp in names
                }
                sink.save(
                    plot_species(
                        species,
                        ENERGY_LABEL,
                        f"resolution (68%) of {xlabel}",
                        f"{section}: {label} per species",
                    ),
                    section,
                    f"resolution_vs_energy_by_species_{name}",
                    f"Resolution vs true energy per species: {label}",
                )
        for name, *_rest, axis_label in results[0].curves["reco_vs_true"]:
            edges = self.reco_edges[name]
            panels = [
                (r.label, t, p)
                for r, res in zip(runs, results)
                for n, t, p, _ in res.curves["reco_vs_true"]
                if n == name
            ]
            sink.save(
                plot_2d(
                    panels,
                    edges,
                    edges,
                    f"true {axis_label}",
                    f"reconstructed {axis_label}",
                    title=f"{section}: reconstructed vs true {name}",
                ),
                section,
                f"reco_vs_true_{name}",
                f"Reconstructed vs true {name}",
                caption="events per bin; the dashed line is reco = true",
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
    """Fractional energy residual ``(E_pred - E_true) / E_true``; with the true species (``aux_label``) the
    fractional momentum residual ``(p_pred - p_true) / p_true`` too, both momenta from the true mass and
    the energy the section declares (``quantity``: kinetic, total; ``momentum``: the residual itself)."""

    required = ("pred_energy", "true_energy")
    main_metric = "resolution_fractional"
    labels = {"fractional": "(E_pred - E_true) / E_true", "momentum": "(p_pred - p_true) / p_true"}

    def residuals(self, run: SectionData) -> dict[str, tuple[np.ndarray, str, bool]]:
        pred, true = run.get("pred_energy"), run.get("true_energy")
        out = {"fractional": (pm.fractional_residual(pred, true), "", True)}
        # What the network regressed (the task's section says; else option `energy`, default kinetic).
        quantity = str(run.info.get("quantity") or self.options.get("energy", "kinetic"))
        if quantity == "momentum":
            out["momentum"] = out["fractional"]
        elif run.has("aux_label"):
            kinetic = quantity == "kinetic"
            labels = np.asarray(run.get("aux_label")).reshape(-1)
            mass = np.array([pm.SPECIES.get(int(label), ("", 0.0))[1] for label in labels])
            p_pred = pm.momentum_from_energy(pred, mass, kinetic)
            p_true = pm.momentum_from_energy(true, mass, kinetic)
            out["momentum"] = (pm.fractional_residual(p_pred, p_true), "", True)
        return out

    def reco_vs_true(self, run: SectionData) -> list[tuple[str, np.ndarray, np.ndarray, str]]:
        true, pred = (
            np.asarray(run.get(f), dtype=np.float64).reshape(-1) for f in ("true_energy", "pred_energy")
        )
        return [("energy", true, pred, "energy [MeV]")]


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

    def reco_vs_true(self, run: SectionData) -> list[tuple[str, np.ndarray, np.ndarray, str]]:
        return _components(run, "position", "vertex", " [cm]")


def _components(
    run: SectionData, field: str, what: str, unit: str
) -> list[tuple[str, np.ndarray, np.ndarray, str]]:
    true = np.asarray(run.get(f"true_{field}"), dtype=np.float64).reshape(-1, 3)
    pred = np.asarray(run.get(f"pred_{field}"), dtype=np.float64).reshape(-1, 3)
    return [(f"{what}_{c}", true[:, i], pred[:, i], f"{what} {c}{unit}") for i, c in enumerate("xyz")]


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

    def reco_vs_true(self, run: SectionData) -> list[tuple[str, np.ndarray, np.ndarray, str]]:
        return _components(run, "direction", "direction", "")
