"""Event classification (particle identification): ROC per signal/background pair, AUC, background
rejection at fixed signal efficiencies, confusion matrix, efficiency vs true energy and distance to wall
at a fixed working point."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np

from recoml.errors import ConfigError, DataError
from recoml.evaluation.checks import check_class_labels, check_probabilities
from recoml.evaluation.registry import Evaluator, PlotSink, SectionResult, register
from recoml.metrics import physics as pm
from recoml.plotting import (
    Series,
    edges_for,
    plot_confusion,
    plot_histograms,
    plot_panels,
    plot_roc,
    plot_species,
)
from recoml.prediction.reader import SectionData

#: Per-event truth the efficiency curves are drawn against: (field, axis label, name in file names).
EFFICIENCY_VARIABLES = (
    ("aux_energy", "true energy [MeV]", "energy"),
    ("aux_dwall", "distance to wall [cm]", "dwall"),
)


def class_names(run: SectionData) -> list[str]:
    names = run.info.get("class_names")
    if names:
        return list(names)
    return [f"class{i}" for i in range(run.get("pred_probabilities").shape[1])]


def percent(e: float) -> str:
    return f"{100 * e:g}"


#: Optional per-class log-likelihoods ``(N, C)`` (a likelihood fit such as fiTQun's): when a run has them,
#: its pair discriminant is the log-likelihood ratio, which keeps its resolution where the posterior
#: ``p_a / (p_a + p_b)`` rounds to exactly 0 or 1 (|ln L_a - ln L_b| > ~37 in float64).
LOG_LIKELIHOODS = "pred_log_likelihoods"


def pair_score(run: SectionData, probs: np.ndarray, sel: np.ndarray, a: int, b: int) -> np.ndarray:
    """The discriminant of signal ``a`` against background ``b`` on the events ``sel``: ``p_a / (p_a +
    p_b)``, or ``ln L_a - ln L_b`` for a run with :data:`LOG_LIKELIHOODS` (the same order of events)."""
    if run.has(LOG_LIKELIHOODS):
        ll = np.asarray(run.get(LOG_LIKELIHOODS), dtype=np.float64)[sel]
        return ll[:, a] - ll[:, b]
    return pm.pair_discriminant(probs[sel], a, b)


@register("classification")
class ClassificationEvaluator(Evaluator):
    """Options: ``pairs`` (``[[signal, background], ...]``; default: the task's pairs, else every pair in
    class order), ``efficiencies`` (signal efficiencies for the rejection, default 0.9/0.95/0.99),
    ``working_point`` (signal efficiency defining the cut of the efficiency curves, default 0.9),
    ``n_bins``."""

    required = ("pred_probabilities", "true_labels")
    main_metric = "accuracy"
    higher_is_better = True

    def check(self, run: SectionData) -> None:
        """Class probabilities (in [0, 1], rows summing to 1) and labels that are class indices."""
        probs = check_probabilities(run, "pred_probabilities", rows_sum_to_one=True)
        names = class_names(run)
        if probs.ndim != 2 or probs.shape[1] != len(names):
            raise DataError(
                f"{run.path}: field '{run.stored_name('pred_probabilities')}' has shape {probs.shape}; "
                f"expected (events, {len(names)}) for the classes {names}"
            )
        check_class_labels(run, "true_labels", names)

    def pairs(self, run: SectionData) -> list[tuple[int, int]]:
        names = class_names(run)
        chosen = self.options.get("pairs") or run.info.get("pairs") or list(combinations(names, 2))
        out = []
        for pair in chosen:
            if len(pair) != 2 or any(p not in names for p in pair):
                raise ConfigError(f"pairs: {list(pair)} is not a pair of classes of {run.path} ({names})")
            out.append((names.index(pair[0]), names.index(pair[1])))
        return out

    def prepare(self, runs: Sequence[SectionData]) -> None:
        n_bins = int(self.options.get("n_bins", 10))
        self.edges = {
            var: edges_for([r.get(var) for r in runs], n_bins)
            for var, _, _ in EFFICIENCY_VARIABLES
            if all(r.has(var) for r in runs)
        }
        first = [class_names(r) for r in runs]
        if any(f != first[0] for f in first):
            raise ConfigError(
                f"runs compared have different classes: {dict(zip([r.label for r in runs], first))}"
            )

    def evaluate(self, run: SectionData) -> SectionResult:
        probs = np.asarray(run.get("pred_probabilities"), dtype=np.float64)
        true = np.asarray(run.get("true_labels"), dtype=np.int64)
        names = class_names(run)
        predicted = probs.argmax(1)
        matrix = pm.confusion_matrix(true, predicted, len(names))
        res = SectionResult()
        res.scalars["accuracy"] = float(np.mean(predicted == true))
        for i, name in enumerate(names):
            res.scalars[f"efficiency_{name}"] = float(matrix[i, i])
        res.tables["confusion_matrix"] = {"classes": names, "matrix": matrix.tolist()}
        for i, name in enumerate(
            names
        ):  # per species: events and identification efficiency with its interval
            right = predicted[true == i] == i
            lo, hi = pm.wilson_interval(right.sum(), len(right))
            res.scalars[f"events/{name}"] = float(len(right))
            res.scalars[f"efficiency_{name}/low"], res.scalars[f"efficiency_{name}/high"] = (
                float(lo),
                float(hi),
            )
        for var, _, short in EFFICIENCY_VARIABLES:
            if var in self.edges:
                x = np.asarray(run.get(var)).reshape(-1)
                res.tables[f"identification_vs_{short}"] = {
                    name: _jsonable(
                        pm.binned_efficiency(x[true == i], predicted[true == i] == i, self.edges[var])
                    )
                    for i, name in enumerate(names)
                }
        wp = float(self.options.get("working_point", 0.9))
        for a, b in self.pairs(run):
            key = f"{names[a]}_vs_{names[b]}"
            sel = (true == a) | (true == b)
            score = pair_score(run, probs, sel, a, b)
            signal = true[sel] == a
            fpr, tpr, _ = pm.roc_curve(score, signal)
            res.curves[key] = {"fpr": fpr, "tpr": tpr, "score": score, "signal": signal}
            res.scalars[f"{key}/auc"] = pm.roc_auc(score, signal)
            for eff in self.options.get("efficiencies", (0.9, 0.95, 0.99)):
                r = pm.rejection_at_efficiency(score, signal, float(eff))
                res.scalars[f"{key}/rejection@{percent(eff)}%"] = r["rejection"]
                res.scalars[f"{key}/bkg_eff@{percent(eff)}%"] = r["background_efficiency"]
            cut = pm.threshold_at_efficiency(score[signal], wp)
            res.tables[f"{key}/working_point"] = {"signal_efficiency": wp, "threshold": cut}
            for var, _, short in EFFICIENCY_VARIABLES:
                if var not in self.edges:
                    continue
                x = np.asarray(run.get(var))[sel]
                passed = score >= cut
                res.tables[f"{key}/efficiency_vs_{short}"] = {
                    "signal": _jsonable(pm.binned_efficiency(x[signal], passed[signal], self.edges[var])),
                    "background": _jsonable(
                        pm.binned_efficiency(x[~signal], passed[~signal], self.edges[var])
                    ),
                }
        return res

    def plot(self, runs, results, sink: PlotSink, section: str) -> None:
        names = class_names(runs[0])
        wp = float(self.options.get("working_point", 0.9))
        for a, b in self.pairs(runs[0]):
            key = f"{names[a]}_vs_{names[b]}"
            label = f"{names[a]} vs {names[b]}"
            series = [
                Series(
                    f"{r.label} (AUC {res.scalars[f'{key}/auc']:.3f})",
                    res.curves[key]["fpr"],
                    res.curves[key]["tpr"],
                    color=i,
                )
                for i, (r, res) in enumerate(zip(runs, results))
            ]
            n_background = [int(np.sum(~res.curves[key]["signal"])) for res in results]
            efficiencies = [float(e) for e in self.options.get("efficiencies", (0.9, 0.95, 0.99))]
            sink.save(
                plot_roc(series, f"{section}: {label}", n_background, efficiencies),
                section,
                f"roc_{key}",
                f"ROC, {label} (signal {names[a]})",
            )
            self._plot_discriminants(runs, results, sink, section, key, (names[a], names[b]))
            for var, xlabel, short in EFFICIENCY_VARIABLES:
                if var not in self.edges:
                    continue
                table = f"{key}/efficiency_vs_{short}"
                sig = [
                    _series(r.label, res.tables[table]["signal"], i)
                    for i, (r, res) in enumerate(zip(runs, results))
                ]
                bkg = [
                    _series(r.label, res.tables[table]["background"], i)
                    for i, (r, res) in enumerate(zip(runs, results))
                ]
                fig = plot_panels(
                    [
                        {
                            "series": sig,
                            "xlabel": xlabel,
                            "ylabel": f"{names[a]} efficiency",
                            "ylim": (0, 1.05),
                        },
                        {
                            "series": bkg,
                            "xlabel": xlabel,
                            "ylabel": f"{names[b]} mis-identified as {names[a]}",
                        },
                    ],
                    title=f"{section}: {label} at {percent(wp)}% {names[a]} efficiency",
                )
                sink.save(
                    fig,
                    section,
                    f"efficiency_vs_{short}_{key}",
                    f"Efficiency vs {xlabel.split(' [')[0]}, {label}",
                    caption=f"cut on the discriminant giving {percent(wp)}% {names[a]} efficiency overall",
                )
        for _, xlabel, short in EFFICIENCY_VARIABLES:
            table = f"identification_vs_{short}"
            if not all(table in res.tables for res in results):
                continue
            species = {
                name: [
                    _series(r.label, res.tables[table][name], i)
                    for i, (r, res) in enumerate(zip(runs, results))
                ]
                for name in names
            }
            sink.save(
                plot_species(
                    species,
                    xlabel,
                    "fraction identified as its species",
                    f"{section}: identification per species",
                    ylim=(0, 1.05),
                ),
                section,
                f"identification_vs_{short}",
                f"Identification efficiency per species vs {xlabel.split(' [')[0]}",
                caption="fraction of each true species whose highest probability is its class (Wilson 68.3%)",
            )
        matrices = [
            (r.label, np.asarray(res.tables["confusion_matrix"]["matrix"])) for r, res in zip(runs, results)
        ]
        sink.save(
            plot_confusion(matrices, names, f"{section}: confusion (row-normalized)"),
            section,
            "confusion",
            "Confusion matrix",
            caption="true class per row, highest probability per column",
        )

    def _plot_discriminants(
        self, runs, results, sink: PlotSink, section: str, key: str, pair: tuple[str, str]
    ) -> None:
        """Signal and background discriminant histograms: the probability ratio of every run on one
        figure, and the log-likelihood ratio of likelihood-fit runs on another (a different axis)."""
        sig, bkg = pair
        kinds = {
            "": (f"discriminant p({sig}) / (p({sig}) + p({bkg}))", "Discriminant"),
            "_loglikelihood": (f"ln L({sig}) - ln L({bkg})", "Log-likelihood ratio"),
        }
        for suffix, (xlabel, title) in kinds.items():
            samples: list[tuple] = []
            for i, (r, res) in enumerate(zip(runs, results)):
                if r.has(LOG_LIKELIHOODS) != bool(suffix):
                    continue
                c = res.curves[key]
                samples.append((f"{r.label}: {sig}", c["score"][c["signal"]], i))
                samples.append((f"{r.label}: {bkg}", c["score"][~c["signal"]], i, "--"))
            if not samples:
                continue
            if suffix:
                scores = np.concatenate([s[1] for s in samples])
                lo, hi = np.quantile(scores, [0.005, 0.995]) if len(scores) else (0.0, 1.0)
                bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 41)
            else:
                bins = np.linspace(0, 1, 41)
            fig = plot_histograms(samples, bins, xlabel, logy=True)
            sink.save(fig, section, f"discriminant{suffix}_{key}", f"{title}, {sig} vs {bkg}")

    def highlights(self, run: SectionData, result: SectionResult) -> list[tuple[int, str]]:
        """The most and the least confident right answers (highest / lowest probability of the true class)
        and the most confident wrong one."""
        probs = np.asarray(run.get("pred_probabilities"), dtype=np.float64)
        true = np.asarray(run.get("true_labels"), dtype=np.int64)
        index = np.asarray(run.get("event_index"), dtype=np.int64)
        names = class_names(run)
        rows = np.flatnonzero((true >= 0) & (true < probs.shape[1]))
        if not len(rows):
            return []
        p_true = probs[rows, true[rows]]
        out = []
        for what, row in (("best", rows[np.argmax(p_true)]), ("worst", rows[np.argmin(p_true)])):
            out.append(
                (
                    int(index[row]),
                    f"{what}: p({names[true[row]]}) = {probs[row, true[row]]:.3f} "
                    f"for a true {names[true[row]]}",
                )
            )
        wrong = rows[probs[rows].argmax(1) != true[rows]]
        if len(wrong):
            row = wrong[np.argmax(probs[wrong].max(1))]
            guess = int(probs[row].argmax())
            out.append(
                (
                    int(index[row]),
                    f"mis-identified: a true {names[true[row]]} taken for {names[guess]} "
                    f"with p = {probs[row, guess]:.3f}",
                )
            )
        return out


def _jsonable(d: dict[str, np.ndarray]) -> dict[str, list[float]]:
    return {k: [float(x) for x in np.asarray(v)] for k, v in d.items()}


def _series(label: str, table: dict[str, list[float]], color: int) -> Series:
    return Series.binned(label, table["edges"], table["efficiency"], table["low"], table["high"], color)
