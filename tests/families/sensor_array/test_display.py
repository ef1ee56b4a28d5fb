"""Sensor-array event displays (KM3NeT): strings against height + top view, and the 3D view, on real
offline KM3NeT events (checked against an independent uproot read of the file) and on toy muons; the
``recoml.display`` entry point on a KM3NeT store."""

from __future__ import annotations

from pathlib import Path

import awkward as ak
import matplotlib.pyplot as plt
import numpy as np
import pytest
import uproot
from matplotlib.collections import PathCollection
from omegaconf import OmegaConf

from recoml.conversion.mapping import parse_mapping
from recoml.conversion.pipeline import convert_root
from recoml.evaluation.displays import display, event_views
from recoml.families.sensor_array import display as sa_display
from recoml.families.sensor_array import load_detx
from recoml.families.sensor_array.sim import simulate_to_store
from recoml.plotting.events import display_module
from tests.evaluation_helpers import compose_verb
from tests.helpers import CONF_DIR, REPO

KM3 = REPO / "tests" / "data" / "km3net"
DETX = KM3 / "km3net_offline.detx"


@pytest.fixture(scope="module")
def detector():
    return load_detx(DETX)


@pytest.fixture(scope="module")
def offline_store(detector, tmp_path_factory: pytest.TempPathFactory) -> Path:
    mapping = parse_mapping(OmegaConf.load(CONF_DIR / "convert" / "km3net_offline.yaml"))
    out = tmp_path_factory.mktemp("km3") / "offline.h5"
    return convert_root(KM3 / "km3net_offline.root", out, mapping, detector=detector, progress=False)


def _independent_doms(event: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uproot's read of one offline event: hit DOM ids, their summed ToT and first time - event's first."""
    hits = uproot.open(KM3 / "km3net_offline.root")["E"].arrays(
        ["hits.dom_id", "hits.t", "hits.tot"], entry_start=event, entry_stop=event + 1, library="ak"
    )
    dom = ak.flatten(hits["hits.dom_id"]).to_numpy()
    t = ak.flatten(hits["hits.t"]).to_numpy().astype(np.float64)
    tot = ak.flatten(hits["hits.tot"]).to_numpy().astype(np.float64)
    doms, where = np.unique(dom, return_inverse=True)
    first = np.full(len(doms), np.inf)
    np.minimum.at(first, where, t)
    return doms, np.bincount(where, tot), first - first.min()


def test_the_detector_class_names_its_display(detector) -> None:
    assert display_module(detector) is sa_display


def test_real_offline_event_strings_view_against_uproot(detector, offline_store: Path) -> None:
    (view,) = event_views([0], data=offline_store)
    doms, tot, first = _independent_doms(0)
    ((name, _, fig),) = sa_display.figures(view, detector)
    assert name == "strings"
    side, top = fig.axes[:2]
    assert side.get_xlabel() == "string (5 strings, in the detector's order)"
    assert side.get_ylabel() == "height z [cm]"
    assert (top.get_xlabel(), top.get_ylabel()) == ("x [cm]", "y [cm]")
    strings = [str(s) for s in np.unique(detector.string_index)]
    assert [t.get_text() for t in side.get_xticklabels()] == strings
    grey, hit = [c for c in side.collections if isinstance(c, PathCollection)]
    assert len(grey.get_offsets()) == detector.n_modules == 90
    assert len(hit.get_offsets()) == len(doms) == 52  # one point per hit DOM
    assert sorted(hit.get_array()) == pytest.approx(sorted(first), abs=1e-3)  # colour: first time
    assert side.get_title() == f"52 modules hit, {tot.sum():.0f} summed charge; size ~ sqrt(charge)"
    assert fig.axes[-1].get_ylabel() == "first hit time after the event's first hit [ns]"
    plt.close(fig)


def test_real_offline_event_3d_view_against_uproot(detector, offline_store: Path) -> None:
    (view,) = event_views([3], data=offline_store)
    doms, tot, first = _independent_doms(3)
    fig = sa_display.interactive(view, detector)
    assert [t.name for t in fig.data] == ["modules", "hit modules"]  # real data: no truth, no track
    assert len(fig.data[0].x) == 90 and len(fig.data[1].x) == len(doms)
    # module k of the detector is DOM dom_ids[k]: the hover text names it, the colour is its first time
    module_dom = detector.sensor_ids[np.unique(detector.module_index, return_index=True)[1], 0]
    hit_modules = [int(t.split()[1]) for t in fig.data[1].text]
    np.testing.assert_array_equal(np.sort(module_dom[hit_modules]), doms)
    order = np.argsort(module_dom[hit_modules])
    np.testing.assert_allclose(np.asarray(fig.data[1].marker.color)[order], first, atol=1e-3)
    scene = fig.layout.scene
    assert (scene.xaxis.title.text, scene.yaxis.title.text, scene.zaxis.title.text) == (
        "x [cm]",
        "y [cm]",
        "z (height) [cm]",
    )


def test_toy_muon_track_crosses_the_array(detector, tmp_path: Path) -> None:
    store, _ = simulate_to_store(detector, tmp_path / "toy.h5", n_events=6, particles=["mu-"], seed=2)
    views = event_views(range(6), data=store)
    for view in views:
        fig = sa_display.interactive(view, detector)
        assert [t.name for t in fig.data] == ["modules", "hit modules", "true track"]
        ends = np.stack([fig.data[2].x, fig.data[2].y, fig.data[2].z], 1)
        lo = detector.centre - 1.05 * detector.half_extent
        hi = detector.centre + 1.05 * detector.half_extent
        on_face = np.isclose(ends, lo, atol=1e-3) | np.isclose(ends, hi, atol=1e-3)
        assert on_face.any(axis=1).all()  # both ends on the box's faces
        point, direction = view.truth["positions"].reshape(3), view.truth["directions"].reshape(3)
        step = ends[1] - ends[0]
        assert np.allclose(np.cross(step, direction), 0, atol=1e-2 * np.linalg.norm(step))  # along it
        assert np.linalg.norm(np.cross(point - ends[0], direction)) < 1e-2  # through the stored point
        (_, _, static), *_ = sa_display.figures(view, detector)
        assert static.axes[1].get_legend_handles_labels()[1] == ["true track"]
        plt.close(static)


def test_track_line_by_hand() -> None:
    lo, hi = -np.ones(3), np.ones(3)
    ends = sa_display.track_line(np.zeros(3), np.array([1.0, 0.0, 0.0]), lo, hi)
    np.testing.assert_allclose(ends, [[-1, 0, 0], [1, 0, 0]])
    diagonal = np.array([1.0, 1.0, 0.0]) / np.sqrt(2)
    np.testing.assert_allclose(sa_display.track_line(np.array([0.5, 0, 0]), diagonal, lo, hi),
                               [[-0.5, -1, 0], [1, 0.5, 0]])  # fmt: skip
    missing = sa_display.track_line(np.array([5.0, 5.0, 0.0]), np.array([0.0, 0.0, 1.0]), lo, hi)
    np.testing.assert_allclose(missing, [[5, 5, 0], [5, 5, 0]])


def test_display_entry_point_on_a_km3net_store(offline_store: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    overrides = [f"data={offline_store}", "detector=km3net", f"detector.path={DETX}", "events=[0,2]"]
    written = display(compose_verb("display", run, overrides))
    for n in (0, 2):
        for suffix in ("strings.png", "strings.pdf", "3d.html"):
            assert (run / "displays" / f"event{n}_{suffix}").is_file()
    assert len(written) == 4 and "displays/event2_strings.png" in (run / "displays.md").read_text()
    assert "hit modules" in (run / "displays" / "event0_3d.html").read_text()
