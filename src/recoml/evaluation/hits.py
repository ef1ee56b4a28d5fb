"""Per-hit classification (signal hits vs dark noise or pile-up): ROC, AUC, efficiency and purity at the
working point, and how both move with the cut."""

from __future__ import annotations

import numpy as np

from recoml.evaluation.registry import Evaluator, PlotSink, SectionResult, register
from recoml.metrics import physics as pm
from recoml.plotting import Series, plot_histograms, plot_panels, plot_roc
from recoml.prediction.reader import SectionData

SCORE, TRUTH = "hit_pred_hit_probability", "hit_true_hit_signal"
#: Cuts at which the efficiency and purity curves are computed.
CUTS = np.linspace(0.0, 1.0, 51)


@register("hit_classification")
class HitClassificationEvaluator(Evaluator):
    """Options: ``hit_threshold`` (the working point; default the task's ``threshold``, else 0.5)."""

    required = (SCORE, TRUTH)
    probabilities = (SCORE,)
    flags = (TRUTH,)
    main_metric = "auc"
    higher_is_better = True

    def threshold(self, run: SectionData) -> float:
        t = self.options.get("hit_threshold")
        return float(t if t is not None else run.info.get("threshold", 0.5))

    def evaluate(self, run: SectionData) -> SectionResult:
        score = np.asarray(run.get(SCORE), dtype=np.float64)
        signal = np.asarray(run.get(TRUTH)) > 0.5
        t = self.threshold(run)
        res = SectionResult()
        res.scalars["auc"] = pm.roc_auc(score, signal)
        at = pm.efficiency_purity(score, signal, t)
        res.scalars |= {
            "threshold": t,
            "efficiency": at["efficiency"],
            "purity": at["purity"],
            "accuracy": at["accuracy"],
            "signal_fraction": float(signal.mean()) if len(signal) else float("nan"),
        }
        fpr, tpr, _ = pm.roc_curve(score, signal)
        sweep = [pm.efficiency_purity(score, signal, c) for c in CUTS]
        res.tables["versus_cut"] = {
            "cut": CUTS.tolist(),
            "efficiency": [s["efficiency"] for s in sweep],
            "purity": [s["purity"] for s in sweep],
        }
        res.curves = {"fpr": fpr, "tpr": tpr, "score": score, "signal": signal}
        return res

    def plot(self, runs, results, sink: PlotSink, section: str) -> None:
        series = [
            Series(f"{r.label} (AUC {res.scalars['auc']:.3f})", res.curves["fpr"], res.curves["tpr"], color=i)
            for i, (r, res) in enumerate(zip(runs, results))
        ]
        sink.save(
            plot_roc(series, f"{section}: hits"), section, "roc", "ROC of hit classification (signal hits)"
        )
        samples: list[tuple] = []
        for i, (r, res) in enumerate(zip(runs, results)):
            samples.append((f"{r.label}: signal", res.curves["score"][res.curves["signal"]], i))
            samples.append((f"{r.label}: background", res.curves["score"][~res.curves["signal"]], i, "--"))
        fig = plot_histograms(
            samples, np.linspace(0, 1, 41), "hit score", logy=True, vline=self.threshold(runs[0])
        )
        sink.save(fig, section, "scores", "Hit scores, signal and background")
        eff = [
            Series(r.label, CUTS, np.asarray(res.tables["versus_cut"]["efficiency"], dtype=float), color=i)
            for i, (r, res) in enumerate(zip(runs, results))
        ]
        pur = [
            Series(r.label, CUTS, np.asarray(res.tables["versus_cut"]["purity"], dtype=float), color=i)
            for i, (r, res) in enumerate(zip(runs, results))
        ]
        fig = plot_panels(
            [
                {
                    "series": eff,
                    "xlabel": "cut on hit score",
                    "ylabel": "efficiency",
                    "ylim": (0, 1.05),
                    "markers": False,
                },
                {
                    "series": pur,
                    "xlabel": "cut on hit score",
                    "ylabel": "purity",
                    "ylim": (0, 1.05),
                    "markers": False,
                },
            ],
            title=f"{section}: efficiency and purity vs cut",
        )
        sink.save(
            fig,
            section,
            "efficiency_purity",
            "Efficiency and purity vs cut",
            caption=f"working point: score >= {self.threshold(runs[0]):g}",
        )
