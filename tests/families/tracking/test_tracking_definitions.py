"""Hand-computed cases of the tracking metric definitions: acorn's target selection, fake and duplicate rates,
the edge AUC over all true edges, and the TrackML score and hit weights (Amrouche et al. 2019,
arXiv:1904.06778; trackml-library score.py/weights.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recoml.errors import ConfigError
from recoml.families.tracking.matching import TargetSelection, is_primary, match_tracks, tracking_metrics
from recoml.families.tracking.metrics import EdgeAUROC
from recoml.families.tracking.trackml_score import trackml_hit_weights, trackml_score, weight_order, weight_pt


def test_target_selection_cuts_each_property() -> None:
    pt = np.array([2.0, 2.0, 2.0, 2.0, 2.0, 0.5])
    eta = np.array([0.0, 3.0, 0.0, 0.0, 0.0, 0.0])
    nhits = np.array([5, 5, 5, 5, 2, 5])
    secondary = 1 << 24  # TrackML generation 1
    pid = np.array([1, 2, 3 + secondary, 4, 5, 6])
    radius = np.array([1.0, 1.0, 1.0, 300.0, 1.0, 1.0])
    pdg = np.array([13, 13, 13, -11, 13, 13])
    assert is_primary(pid).tolist() == [True, True, False, True, True, True]
    assert TargetSelection().select(pt, eta, nhits, pid).tolist() == [1, 1, 1, 1, 0, 0]
    sel = TargetSelection(eta_max=2.5, primary_only=True, max_production_radius=260.0, exclude_pdg=(11,))
    assert sel.select(pt, eta, nhits, pid, radius, pdg).tolist() == [1, 0, 0, 0, 0, 0]
    with pytest.raises(ConfigError, match="production vertices"):
        TargetSelection(max_production_radius=260.0).select(pt, eta, nhits, pid)


def test_acorn_rates_with_a_non_target_particle() -> None:
    # Particle 1 (target, 6 hits) found twice by ATLAS matching; particle 2 (pT 0.5: not a target, 4 hits)
    # found once; one noise track.
    pid = np.array([1] * 6 + [2] * 4 + [0] * 3)
    track = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 3])
    pt = np.where(pid == 1, 2.0, np.where(pid == 2, 0.5, 0.0))
    m = match_tracks(np.zeros(len(pid)), pid, track, pt, np.zeros(len(pid)), min_track_hits=2)
    res = tracking_metrics(m)
    atlas = res["atlas"]
    assert atlas["efficiency"] == 1.0
    assert atlas["fake_rate"] == pytest.approx(1 / 4)  # unmatched / all 4 tracks
    # (2 matched tracks of target particles - 1 reconstructed target) / 1 reconstructed target.
    assert atlas["duplicate_rate"] == pytest.approx(1.0)
    # Old variant: (3 matched tracks - 2 distinct particles) / 3 matched tracks.
    assert atlas["duplicate_rate_over_matched_tracks"] == pytest.approx(1 / 3)
    # Track 1 has 2 of 6 hits of particle 1: completeness 1/3, not double-majority matched.
    assert res["double_majority"]["duplicate_rate"] == 0.0
    assert res["double_majority"]["fake_rate"] == pytest.approx(2 / 4)


def test_edge_auc_counts_all_true_edges() -> None:
    # Scores: target edges 0.9, 0.8; a non-target true edge 0.1; false edges 0.5, 0.2.
    scores = torch.tensor([0.9, 0.8, 0.1, 0.5, 0.2])
    y = torch.tensor([True, True, True, False, False])
    target = torch.tensor([True, True, False, False, False])
    full = EdgeAUROC(thresholds=None)
    full.update(scores, y, target)
    # Pairs (true, false): (0.9, *) 2 wins, (0.8, *) 2 wins, (0.1, *) 0 wins -> 4 / 6.
    assert float(full.compute()) == pytest.approx(4 / 6)
    masked = EdgeAUROC(thresholds=None, target_only=True)
    masked.update(scores, y, target)
    assert float(masked.compute()) == pytest.approx(1.0)


def test_trackml_order_and_pt_weights() -> None:
    # 4 hits: TrackML's proposal interpolated at 0, 1, 2, 3 on supports 0, 3/8, ..., 3: 10, 16/3, 3, 6.
    raw = np.array([10.0, 16 / 3, 3.0, 6.0])
    np.testing.assert_allclose(weight_order(4), raw / raw.sum())
    assert weight_order(3).tolist() == [0.0, 0.0, 0.0]
    assert weight_order(25)[20:].tolist() == [0.0] * 5 and weight_order(25).sum() == pytest.approx(1.0)
    np.testing.assert_allclose(weight_pt(np.array([0.01, 0.3, 1.75, 3.0, 10.0])), [0.0, 0.2, 0.6, 1.0, 1.0])
    # Per event the weights sum to 1; noise and 3-hit particles weigh 0; order follows the distance.
    event = np.zeros(9, int)
    pid = np.array([7, 7, 7, 7, 8, 8, 8, 0, 0])
    distance = np.array([3.0, 1.0, 2.0, 4.0, 1.0, 2.0, 3.0, 0.0, 0.0])
    w = trackml_hit_weights(event, pid, np.full(9, 5.0), distance)
    np.testing.assert_allclose(w[[1, 2, 0, 3]], raw / raw.sum())
    assert w[4:].tolist() == [0.0] * 5


def test_trackml_score_hand_computed() -> None:
    # Event 0: particle 1 (4 hits, 0.15 each), particle 2 (4 hits, 0.1 each), 2 noise hits (0).
    # Track 0: 3 hits of particle 1 + 1 of particle 2 -> good (3/4 of the track, 3/4 of the particle): 0.45.
    # Track 1: 2 hits of particle 2 + 2 noise: tie, noise (id 0) is the majority -> not good.
    # Event 1: one particle of 4 hits (0.25 each), all in one track -> 1.0. Mean: 0.725.
    event = np.array([0] * 10 + [1] * 4)
    pid = np.array([1, 1, 1, 1, 2, 2, 2, 2, 0, 0, 5, 5, 5, 5])
    weight = np.array([0.15] * 4 + [0.1] * 4 + [0.0] * 2 + [0.25] * 4)
    track = np.array([0, 0, 0, -1, 0, 1, 1, -1, 1, 1, 4, 4, 4, 4])
    res = trackml_score(event, pid, track, weight)
    np.testing.assert_allclose(res["event_scores"], [0.45, 1.0])
    assert res["score"] == pytest.approx(0.725)
    # The truth itself as the submission scores 1.
    assert trackml_score(event, pid, np.where(pid > 0, pid, 100 + np.arange(14)), weight)["score"] == 1.0
