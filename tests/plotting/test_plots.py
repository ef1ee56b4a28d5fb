"""Plots at physics-note standard: error bars and bin-width bars, event counts and under/overflow in the
legends, rejection with lower limits where no background passes, 2D reco vs true, and experiment styles
(ATLAS, CMS, LHCb) whose texts never overlap."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.container import ErrorbarContainer

from recoml.errors import ConfigError
from recoml.metrics import physics as pm
from recoml.plotting import (
    Series,
    apply_style,
    current_style,
    plot_2d,
    plot_confusion,
    plot_histograms,
    plot_lines,
    plot_panels,
    plot_roc,
)

RNG = np.random.default_rng(3)


@pytest.fixture(autouse=True)
def _plain_style():
    apply_style(None)
    yield
    apply_style(None)
    plt.close("all")


def _texts(fig) -> list:
    """Every text drawn: figure texts and titles, per axes its title(s), axis labels, tick labels inside
    the view, legend entries and free texts."""
    fig.canvas.draw()
    out = list(fig.texts) + ([fig._suptitle] if fig._suptitle is not None else [])
    for ax in fig.axes:
        box = ax.get_window_extent()
        ticks = [
            t
            for t in ax.xaxis.get_majorticklabels()
            if box.x0 - 1 <= t.get_window_extent().x0 + t.get_window_extent().width / 2 <= box.x1 + 1
        ]
        ticks += [
            t
            for t in ax.yaxis.get_majorticklabels()
            if box.y0 - 1 <= t.get_window_extent().y0 + t.get_window_extent().height / 2 <= box.y1 + 1
        ]
        out += ticks + [ax.xaxis.label, ax.yaxis.label, ax.title, ax._left_title, ax._right_title, *ax.texts]
        if ax.get_legend() is not None:
            out += list(ax.get_legend().get_texts())
    unique = {id(t): t for t in out if t.get_visible() and t.get_text().strip()}
    return list(unique.values())


def overlapping_texts(fig, tolerance: float = 2.0) -> list[tuple[str, str]]:
    """Pairs of texts whose bounding boxes overlap by more than ``tolerance`` pixels both ways (mplhep
    sets "ATLAS" and "Simulation" a pixel apart by design)."""
    boxes = [(t.get_text(), t.get_window_extent()) for t in _texts(fig)]
    out = []
    for i, (a, p) in enumerate(boxes):
        for b, q in boxes[i + 1 :]:
            dx = min(p.x1, q.x1) - max(p.x0, q.x0)
            dy = min(p.y1, q.y1) - max(p.y0, q.y0)
            if dx > tolerance and dy > tolerance:
                out.append((a, b))
    return out


def _efficiency_series() -> list[Series]:
    edges = np.array([0.0, 0.5, 1.0, 2.0, 5.0, 10.0])
    out = []
    for i in range(2):
        x = RNG.uniform(0, 12, 400)  # some above the last edge: not counted
        passed = RNG.random(400) < np.clip(x / 2, 0, 0.95)
        b = pm.binned_efficiency(x, passed, edges)
        out.append(Series.binned(f"run {i}", b["edges"], b["efficiency"], b["low"], b["high"], i))
    return out


def _figures() -> dict[str, object]:
    """One figure of every kind, from small data."""
    series = _efficiency_series()
    scores = np.r_[RNG.beta(5, 2, 300), RNG.beta(2, 5, 300)]
    signal = np.r_[np.ones(300, bool), np.zeros(300, bool)]
    fpr, tpr, _ = pm.roc_curve(scores, signal)
    energy = RNG.uniform(100, 1000, 500)
    return {
        "lines": plot_lines(series, "true pT [GeV]", "track efficiency", ylim=(0, 1.05), title="efficiency"),
        "panels": plot_panels(
            [
                {
                    "series": series,
                    "xlabel": "true energy [MeV]",
                    "ylabel": "e efficiency",
                    "title": "true e",
                },
                {
                    "series": series,
                    "xlabel": "true energy [MeV]",
                    "ylabel": "mu efficiency",
                    "title": "true mu",
                },
            ],
            title="pid: identification efficiency per species",
        ),
        "roc": plot_roc([Series("cnn (AUC 0.9)", fpr, tpr)], "pid: e vs mu", [300], [0.9, 0.95, 0.99]),
        "histogram": plot_histograms(
            [("cnn: e", RNG.normal(0, 1, 400), 0), ("cnn: mu", RNG.normal(1, 1, 400), 0, "--")],
            np.linspace(-2, 2, 21),
            "discriminant",
            title="pid: discriminant",
        ),
        "2d": plot_2d(
            [("cnn", energy, energy * RNG.normal(1, 0.1, 500))],
            np.linspace(0, 1100, 23),
            np.linspace(0, 1100, 23),
            "true energy [MeV]",
            "reconstructed energy [MeV]",
            title="energy: reconstructed vs true",
        ),
        "confusion": plot_confusion(
            [("cnn", np.eye(3) * 0.8 + 0.066)], ["gamma", "e", "mu"], "pid: confusion"
        ),
    }


def test_binned_points_have_bin_width_bars_and_intervals_and_skip_empty_bins() -> None:
    edges = np.array([0.0, 1.0, 2.0, 3.0])
    b = pm.binned_efficiency(np.array([0.5, 0.5, 2.5]), np.array([True, False, True]), edges)
    assert np.isnan(b["efficiency"][1]) and np.isnan(b["low"][1])  # empty bin: no measurement, not 0
    s = Series.binned("run", b["edges"], b["efficiency"], b["low"], b["high"])
    np.testing.assert_allclose(s.x, [0.5, 2.5])
    np.testing.assert_allclose(s.xerr, [[0.5, 0.5], [0.5, 0.5]])  # the whole bin
    # Wilson 68.3% for 1 of 1 (hand computed): centre (1 + 1/2) / 2 = 0.75, half width 1/2 sqrt(1/4) = 0.25
    np.testing.assert_allclose(s.yerr[:, 1], [0.5, 0.0])
    fig = plot_lines([s], "x [cm]", "efficiency")
    (container,) = [c for c in fig.axes[0].containers if isinstance(c, ErrorbarContainer)]
    assert container.has_xerr and container.has_yerr
    assert container.lines[0].get_linestyle() == "None"  # points, never joined by lines


def test_tracking_efficiency_uses_the_one_interval_definition_and_starts_at_zero_pt() -> None:
    from recoml.families.tracking.matching import DEFAULT_PT_BINS, _binned

    assert DEFAULT_PT_BINS[0] == 0.0
    out = _binned(np.array([0.1, 0.2, 1.2]), np.array([False, False, True]), np.asarray(DEFAULT_PT_BINS))
    b = pm.binned_efficiency(np.array([0.1, 0.2, 1.2]), np.array([False, False, True]), DEFAULT_PT_BINS)
    np.testing.assert_allclose(out["low"], b["low"], equal_nan=True)
    np.testing.assert_allclose(out["high"], b["high"], equal_nan=True)
    assert out["high"][0] > 0  # 0 of 2 still has an upper bound, not a zero-width bar
    assert np.isnan(out["value"][-1])  # empty bin


def test_histograms_show_poisson_errors_counts_and_flow() -> None:
    values = np.r_[np.linspace(-2.9, 2.9, 100), [-10.0, 10.0, 11.0], [np.nan]]
    fig = plot_histograms([("cnn", values, 0)], np.linspace(-3, 3, 13), "residual [cm]")
    ax = fig.axes[0]
    assert any(isinstance(c, ErrorbarContainer) for c in ax.containers)
    (text,) = [t.get_text() for t in ax.get_legend().get_texts()]
    assert text == "cnn: N = 103 (1 under, 2 over)"  # NaN left out, flow counted, not drawn
    assert ax.get_ylabel() == "(1/N) dN/dx [1/cm]" and ax.get_xlabel() == "residual [cm]"


def test_rejection_is_plotted_where_it_matters_with_a_lower_limit_when_no_background_passes() -> None:
    scores = np.r_[np.linspace(0.5, 1.0, 50), np.linspace(0.0, 0.6, 20)]  # signal above 0.6 has no background
    signal = np.r_[np.ones(50, bool), np.zeros(20, bool)]
    fpr, tpr, _ = pm.roc_curve(scores, signal)
    fig = plot_roc([Series("cnn", fpr, tpr)], "e vs mu", [20], [0.9, 0.95])
    right = fig.axes[1]
    assert right.get_xlim() == pytest.approx((0.7, 1.0)) and right.get_yscale() == "log"
    labels = [t.get_text() for t in right.get_legend().get_texts()]
    assert "no background passes: > 21" in labels  # N + 1, the inverse of the Wilson upper bound 1/21
    assert all(np.isfinite(line.get_ydata()).all() for line in right.get_lines() if len(line.get_ydata()))
    assert right.collections  # the statistical band
    assert isinstance(pm.rejection_at_efficiency(scores, signal, 0.75)["rejection"], pm.LowerLimit)


def test_2d_reco_vs_true_has_counts_the_diagonal_and_units() -> None:
    fig = _figures()["2d"]
    ax, cbar = fig.axes
    assert ax.get_xlabel() == "true energy [MeV]" and cbar.get_ylabel() == "events / bin"
    assert ax.get_title() == "cnn: N = 500" or "N = 500" in ax.get_title()
    assert [line.get_linestyle() for line in ax.get_lines()] == ["--"]


@pytest.mark.parametrize("style", ["ATLAS", "CMS", "LHCb"])
def test_experiment_styles_label_every_panel_and_no_text_overlaps(style: str) -> None:
    apply_style(style)
    assert current_style() in ("ATLAS", "CMS", "LHCb2")
    for name, fig in _figures().items():
        assert overlapping_texts(fig) == [], name
        texts = " ".join(t.get_text() for t in _texts(fig))
        assert "Simulation" in texts, name  # "ATLAS Simulation" above the panels
    with pytest.raises(ConfigError, match="unknown mplhep style"):
        apply_style("NoSuchExperiment")


def test_plain_style_figures_have_no_overlapping_text() -> None:
    for name, fig in _figures().items():
        assert overlapping_texts(fig) == [], name


def _study(n: int):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="tiny", sampler=optuna.samplers.RandomSampler(seed=0))

    def objective(trial) -> float:
        lr = trial.suggest_float("optimizer.lr", 1e-5, 1e-1, log=True)
        width = trial.suggest_categorical("model.net.width", [16, 32, 64])
        return (np.log10(lr) + 3) ** 2 + width / 64

    study.optimize(objective, n_trials=n)
    return study


@pytest.mark.parametrize("style", [None, "CMS"])
def test_hpo_plots_in_the_same_style_integer_trials_and_an_importance_warning(
    style, tmp_path, caplog
) -> None:
    from recoml.sweeps import report

    study = _study(6)
    apply_style(style)
    history = report.plot_history(study, "val/loss")
    ax = history.axes[0]
    assert ax.get_xlabel() == "trial" and ax.get_ylabel() == "val/loss"
    assert all(float(t).is_integer() for t in ax.get_xticks())  # no fractional trial numbers
    importances = report.plot_importances(study, "val/loss")
    assert "only 6 completed trials: unreliable below ~20" in importances.axes[0].get_xlabel()
    assert "unreliable" in caplog.text
    parallel = report.plot_parallel(study, "val/loss")
    assert len(parallel.axes[0].get_lines()) == 6 + 2  # one line per trial, one vertical axis per parameter
    assert "optimizer.lr\n1e-05" in " ".join(t.get_text() for t in parallel.axes[0].get_xticklabels()) or any(
        "(log)" in t.get_text() for t in parallel.axes[0].get_xticklabels()
    )
    for fig in (history, importances, parallel):
        assert overlapping_texts(fig) == []
    written = report.write_plots(study, tmp_path, "val/loss", style)
    assert {p.name for p in written} == {
        "optimization_history.png",
        "param_importances.png",
        "parallel_coordinate.png",
    }
    assert (tmp_path / "parallel_coordinate.pdf").is_file()


def test_roc_without_background_events_renders_and_says_why(tmp_path) -> None:
    """A test split with no background event of the pair (fpr undefined): no empty log axis (which
    matplotlib cannot draw), a note instead; the ROC panel is still drawn."""
    fig = plot_roc([Series("cnn", np.array([np.nan, np.nan]), np.array([0.0, 1.0]))], "e vs mu", [0], [0.9])
    right = fig.axes[1]
    assert right.get_yscale() == "linear"
    assert any("no background events" in t.get_text() for t in right.texts)
    fig.savefig(tmp_path / "roc.png")
    plt.close(fig)
