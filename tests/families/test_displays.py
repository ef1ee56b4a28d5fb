"""Event displays: water-Cherenkov unrolled tank + image + 3D, tracker hits/edges/tracks + 3D, the
``recoml.display`` entry point, and the dispatcher that takes the drawing code from the detector."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from hydra.utils import instantiate
from matplotlib.collections import EllipseCollection, LineCollection, PathCollection
from omegaconf import OmegaConf

from recoml.errors import ConfigError, DataError
from recoml.evaluation.displays import detector_for, display, event_views
from recoml.families.tracking import display as tracker_display
from recoml.families.water_cherenkov import display as wc_display
from recoml.plotting.events import EventView, display_module, draw_event
from tests.evaluation_helpers import compose_verb
from tests.helpers import CONF_DIR


@pytest.fixture(scope="module")
def wcte():
    return instantiate(OmegaConf.load(CONF_DIR / "detector" / "wcte.yaml"))


def _store(toy_data: Path) -> Path:
    return toy_data / "toy_wcte.h5"


def test_unroll_places_barrel_and_folded_caps_as_documented(wcte) -> None:
    R, H = wcte.radius, wcte.half_height
    points = np.array([[R, 0, 0], [0, 0, R], [-R, 10, 1e-9], [0, H, 0], [R, H, 0], [0, -H, 0], [-R, -H, 0]])
    u, v = wc_display.unroll(points, R, H)
    # barrel: u = R atan2(z, x), v = y; caps: u = z, v = +-(H + R - x)
    np.testing.assert_allclose(u, [0, R * np.pi / 2, R * np.pi, 0, 0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(v, [0, 0, 10, H + R, H, -(H + R), -(H + 2 * R)], atol=1e-6)


def test_cherenkov_ring_of_a_centred_vertex_is_the_41_degree_cone_on_the_barrel(wcte) -> None:
    R, H = wcte.radius, wcte.half_height
    u, v = wc_display._ring(np.zeros(3), np.array([1.0, 0.0, 0.0]), R, H)
    ok = np.isfinite(u)
    # Along the direction (+x, u = 0) the ring reaches height R tan(41.2 deg) (hand computed: 135.9 cm).
    assert np.nanmax(v) == pytest.approx(R * np.tan(np.radians(41.2)), rel=2e-3)
    assert np.nanmax(v) == pytest.approx(135.9, abs=0.3)
    assert np.all(np.abs(u[ok]) < R * np.pi)  # entirely on the barrel, no break
    assert not np.isnan(u).any()


def test_water_cherenkov_views_show_every_hit_pmt_modules_rings_and_units(toy_data: Path, wcte) -> None:
    (view,) = event_views([3], data=_store(toy_data))
    figs = {name: fig for name, _, fig in wc_display.figures(view, wcte)}
    assert set(figs) == {"unrolled", "image"}
    charge_ax, time_ax = figs["unrolled"].axes[:2]
    n_hit = len(np.unique(view.hits["hit_pmt"]))
    for ax in (charge_ax, time_ax):
        assert "[cm]" in ax.get_xlabel() and "[cm]" in ax.get_ylabel()
        scatters = [c for c in ax.collections if isinstance(c, PathCollection)]
        assert [len(c.get_offsets()) for c in scatters] == [wcte.n_pmts, n_hit]  # all PMTs, then the hit ones
        (modules,) = [c for c in ax.collections if isinstance(c, EllipseCollection)]
        assert len(modules.get_offsets()) == wcte.n_modules  # the mPMT structure
        labels = [line.get_label() for line in ax.get_lines()]
        assert "true Cherenkov ring" in labels and "true direction on wall" in labels
    colorbar_labels = {a.get_ylabel() for a in figs["unrolled"].axes[2:]}
    assert colorbar_labels == {"charge per PMT [p.e.]", "first hit time [ns] (2-98% range)"}
    assert "event 3" in figs["unrolled"].get_suptitle() and "MeV" in figs["unrolled"].get_suptitle()
    (image_ax, _) = figs["image"].axes
    image = image_ax.get_images()[-1].get_array()  # over the grey module pixels
    assert image.shape == wcte.image_shape
    assert float(image.sum()) == pytest.approx(float(view.hits["hit_charge"].sum()), rel=1e-5)
    for fig in figs.values():
        plt.close(fig)


def test_predicted_ring_is_drawn_over_the_true_one(toy_data: Path, wcte) -> None:
    (view,) = event_views([0], data=_store(toy_data))
    view.predicted = {"pred_direction": np.array([0.0, 1.0, 0.0]), "pred_position": np.zeros(3)}
    (name, _, fig), *_ = wc_display.figures(view, wcte)
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert "predicted Cherenkov ring" in labels and "predicted direction on wall" in labels
    plt.close(fig)


def test_interactive_3d_view_has_pmts_hits_and_the_true_track(toy_data: Path, wcte, tmp_path: Path) -> None:
    (view,) = event_views([1], data=_store(toy_data))
    fig = wc_display.interactive(view, wcte)
    names = [t.name for t in fig.data]
    assert names[:2] == ["PMTs", "hit PMTs"] and "true vertex and direction" in names
    assert len(fig.data[1].x) == len(np.unique(view.hits["hit_pmt"]))
    assert fig.layout.scene.xaxis.title.text == "x [cm]"
    written = draw_event(view, wcte, tmp_path)
    html = tmp_path / "event1_3d.html"
    assert html.is_file() and (tmp_path / "plotly.min.js").is_file() and "hit PMTs" in html.read_text()
    assert {f for _, files in written for f in files} == {"png", "pdf", "html"}


def test_the_dispatcher_takes_the_drawing_module_from_the_detector_class(wcte) -> None:
    assert display_module(wcte) is wc_display

    class NoDisplay:
        name = "bare"
        event_display = None  # the Detector contract's default

    with pytest.raises(ConfigError, match="names no event display"):
        display_module(NoDisplay())


def _two_track_event() -> EventView:
    """Two straight tracks of 4 hits (particles 1 and 2) plus a noise hit, with true edges scored 0.9 and
    one false edge (track 1 -> noise) scored 0.2."""
    r = np.array([30.0, 70.0, 110.0, 170.0])
    x = np.r_[r, -r, 50.0]
    y = np.r_[r * 0.1, r * 0.5, -80.0]
    z = np.r_[r * 0.2, -r * 0.3, 10.0]
    pid = np.array([1, 1, 1, 1, 2, 2, 2, 2, 0])
    src = np.array([0, 1, 2, 4, 5, 6, 1])
    dst = np.array([1, 2, 3, 5, 6, 7, 8])
    score = np.array([0.9, 0.9, 0.9, 0.9, 0.9, 0.9, 0.2], dtype=np.float32)
    hits = {"hit_x": x, "hit_y": y, "hit_z": z, "hit_particle_id": pid}
    edges = {"edge_src": src, "edge_dst": dst, "edge_score": score}
    sections = [{"name": "edges", "kind": "edge_classification", "threshold": 0.5}]
    return EventView(index=7, objects={"hits": hits, "edges": edges}, sections=sections)


def test_tracker_views_hits_edges_by_score_and_tracks_vs_truth() -> None:
    view = _two_track_event()
    labels = tracker_display.reconstructed_tracks(view)
    assert len(np.unique(labels[labels >= 0])) == 2 and labels[8] == -1  # the 0.2 edge is cut
    figs = {name: fig for name, _, fig in tracker_display.figures(view, None)}
    assert set(figs) == {"hits", "edges", "tracks"}
    xy, rz = figs["hits"].axes[:2]
    assert (xy.get_xlabel(), xy.get_ylabel(), rz.get_xlabel(), rz.get_ylabel()) == (
        "x [mm]",
        "y [mm]",
        "z [mm]",
        "r [mm]",
    )
    edge_lines = [c for c in figs["edges"].axes[0].collections if isinstance(c, LineCollection)]
    assert len(edge_lines) == 1 and len(edge_lines[0].get_segments()) == 7
    np.testing.assert_allclose(sorted(edge_lines[0].get_array()), sorted(view.objects["edges"]["edge_score"]))
    assert figs["edges"].axes[-1].get_ylabel() == "edge score"
    truth_ax, reco_ax = figs["tracks"].axes
    assert truth_ax.get_title() == "truth: 2 particles with 2+ hits"
    assert reco_ax.get_title() == "reconstructed: 2 tracks, 0 not matched (red, dashed)"
    fig3d = tracker_display.interactive(view, None)
    assert len(fig3d.data) == 3  # hits + two tracks
    for fig in figs.values():
        plt.close(fig)


def test_tracker_layers_are_drawn_from_the_detector() -> None:
    detector = instantiate(OmegaConf.load(CONF_DIR / "detector" / "toy_tracker.yaml"))
    assert display_module(detector) is tracker_display
    (_, _, fig), *_ = tracker_display.figures(_two_track_event(), detector)
    n_layers = len(detector.layers)
    assert len(fig.axes[1].get_lines()) == n_layers  # every layer as a line in r-z
    assert len(fig.axes[0].get_lines()) == int((~detector.is_disk).sum())  # barrels as circles in x-y
    plt.close(fig)


def test_display_entry_point_writes_views_html_and_an_index(toy_data: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    cfg = compose_verb("display", run, [f"data={_store(toy_data)}", "detector=wcte", "events=[2,5]"])
    written = display(cfg)
    for n in (2, 5):
        for suffix in ("unrolled.png", "unrolled.pdf", "image.png", "3d.html"):
            assert (run / "displays" / f"event{n}_{suffix}").is_file()
    index = (run / "displays.md").read_text()
    assert "displays/event5_unrolled.png" in index and len(written) == 6


def test_display_refuses_what_it_cannot_draw(toy_data: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="give data="):
        display(compose_verb("display", tmp_path / "a", []))
    with pytest.raises(ConfigError, match="name no detector"):  # the toy store records no detector config
        display(compose_verb("display", tmp_path / "b", [f"data={_store(toy_data)}"]))
    with pytest.raises(ConfigError, match="is not an event of"):
        display(
            compose_verb(
                "display", tmp_path / "c", [f"data={_store(toy_data)}", "detector=wcte", "events=[100000]"]
            )
        )
    with pytest.raises(DataError, match="does not exist"):
        event_views([0], predictions=tmp_path / "missing")
    with pytest.raises(ConfigError, match="name no detector"):
        detector_for(None, {"config": {}})


def test_evaluate_report_shows_best_worst_and_misidentified_events(tmp_path: Path, pid_ckpt: Path) -> None:
    from recoml.evaluation import evaluate
    from recoml.prediction.run import predict

    pred = predict(compose_verb("predict", tmp_path / "predict", [f"ckpt_path={pid_ckpt}"]))
    result = evaluate(compose_verb("evaluate", tmp_path / "eval", [f"predictions={pred}"]))
    shown = [f for f in result.figures if f.section == "event displays"]
    assert shown and all(f.caption.startswith("pid, ") for f in shown)  # each says why it was chosen
    for why in ("best: p(", "worst: p(", "mis-identified: a true"):  # a two-step training gets some wrong
        assert any(why in f.caption for f in shown), why
    report = result.report.read_text()
    assert "## event displays" in report and "_unrolled.png)" in report and "_3d.html)" in report
    # the display entry point takes the predict run directory and draws the predicted probabilities
    run = tmp_path / "display"
    display(compose_verb("display", run, [f"predictions={pred.parent}", "n_events=1"]))
    (png,) = (run / "displays").glob("event*_unrolled.png")
    assert png.stat().st_size > 10_000
