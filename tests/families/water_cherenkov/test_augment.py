"""Detector-symmetry augmentations: PMT permutations and consistent targets."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
import yaml

from recoml.conf import CONF_DIR
from recoml.contracts.batch import HitBatch
from recoml.families.water_cherenkov import WCDetector, build_cylinder
from recoml.families.water_cherenkov.augment import (
    CylinderAugment,
    Symmetry,
    angles_to_direction,
    detector_symmetries,
    direction_to_angles,
)
from recoml.families.water_cherenkov.images import ImageBuilder
from recoml.families.water_cherenkov.synthetic import random_hit_batch

CONF = CONF_DIR / "detector"
IDX = CylinderAugment.transform_index


@functools.cache
def detector(name: str) -> WCDetector:
    if name == "toy":  # single PMTs, barrel_columns % 4 == 0: every quarter turn is a symmetry
        return build_cylinder("toy", 100.0, 100.0, 4, 8, 5, 30.0, 70.0)
    if name == "toy_mpmt":
        return build_cylinder(
            "toy_mpmt", 100.0, 100.0, 4, 8, 5, 30.0, 70.0, pmts_per_module=19, module_radius=10.0
        )
    cfg = yaml.safe_load((CONF / f"{name}.yaml").read_text())
    cfg.pop("_target_")
    return build_cylinder(**cfg)


@functools.cache
def augment(name: str) -> CylinderAugment:
    return CylinderAugment(detector(name))


def names(aug: CylinderAugment) -> set[str]:
    return {n for n in aug.transform_names if n}


@pytest.mark.parametrize(
    ("name", "rotations"), [("wcte", [180]), ("sk", [180]), ("toy", [90, 180, 270]), ("toy_mpmt", [180])]
)
def test_symmetries_found(name, rotations):
    aug = augment(name)
    assert aug.reflect_x and aug.flip_y
    assert [round(90 * m) for m in aug.rotation_choices] == rotations
    assert len(names(aug)) == 4 * (len(rotations) + 1)
    for row, label in enumerate(aug.transform_names):
        if label:
            perm = aug.permutations[row]
            assert torch.equal(torch.sort(perm).values, torch.arange(detector(name).n_pmts))  # bijection


def test_mpmt_quarter_turn_fails_only_on_cap_inner_ring():
    """WCTE's 6-PMT inner ring sits at 30 + 60 n degrees: a cap module turned by 90 degrees misses it."""
    found = detector_symmetries(detector("wcte"))
    assert Symmetry(False, False, 1) not in found and Symmetry(False, False, 2) in found


@pytest.mark.parametrize("name", ["wcte", "toy"])
def test_involutions_and_quarter_turns(name):
    aug = augment(name)
    identity = torch.arange(detector(name).n_pmts)
    for row in (IDX(1, 0, 0), IDX(0, 1, 0), IDX(0, 0, 2), IDX(1, 1, 2)):
        perm = aug.permutations[row]
        assert not torch.equal(perm, identity) and torch.equal(perm[perm], identity)
    if name == "toy":
        quarter = aug.permutations[IDX(0, 0, 1)]
        p = identity
        for _ in range(4):
            p = quarter[p]
        assert torch.equal(p, identity)
        assert torch.equal(quarter[quarter], aug.permutations[IDX(0, 0, 2)])


def test_permutation_matches_transformed_geometry():
    det = detector("wcte")
    aug = augment("wcte")
    pos = torch.as_tensor(det.pmt_positions)
    direction = torch.as_tensor(det.pmt_directions)
    for row, label in enumerate(aug.transform_names):
        if not label:
            continue
        m = aug.matrices[row]
        perm = aug.permutations[row]
        assert torch.allclose(pos[perm], pos @ m.T, atol=1e-3 * det.radius)
        assert torch.allclose(direction[perm], direction @ m.T, atol=1e-3)


def test_reflect_x_on_barrel_by_hand():
    """Barrel column c sits at phi = 2 pi (c + 1/2) / W; x -> -x sends it to pi - phi, column W/2 - 1 - c."""
    det = detector("sk")
    width = 150
    perm = augment("sk").permutations[IDX(1, 0, 0)]
    for row, col in [(0, 0), (10, 3), (50, 149), (25, 74)]:
        k = 1749 + row * width + col
        target = 1749 + row * width + (width // 2 - 1 - col) % width
        assert int(perm[k]) == target
        phi = math.atan2(det.pmt_positions[k, 2], det.pmt_positions[k, 0])
        phi_t = math.atan2(det.pmt_positions[target, 2], det.pmt_positions[target, 0])
        assert math.isclose(math.remainder(phi_t - (math.pi - phi), 2 * math.pi), 0.0, abs_tol=1e-5)


def test_targets_follow_the_transform():
    det = detector("wcte")
    aug = augment("wcte")
    batch = random_hit_batch(det, 8, 30, generator=torch.Generator().manual_seed(0))
    transform = torch.tensor([IDX(1, 0, 0), IDX(0, 1, 0), IDX(0, 0, 2), IDX(1, 1, 2), 0, 0, IDX(1, 0, 0), 0])
    out = aug.transform_batch(batch, transform)
    pos, new_pos = batch.targets["positions"], out.targets["positions"]
    assert torch.allclose(new_pos[0, 0], pos[0, 0] * torch.tensor([-1.0, 1.0, 1.0]))
    assert torch.allclose(new_pos[1, 0], pos[1, 0] * torch.tensor([1.0, -1.0, 1.0]))
    assert torch.allclose(new_pos[2, 0], pos[2, 0] * torch.tensor([-1.0, 1.0, -1.0]), atol=1e-4)
    assert torch.equal(new_pos[4], pos[4])
    d = out.targets["directions"][:, 0]
    assert torch.allclose(d[0], batch.targets["directions"][0, 0] * torch.tensor([-1.0, 1.0, 1.0]))
    # Stored angles are those of the transformed direction.
    assert torch.allclose(angles_to_direction(out.targets["angles"]), d, atol=1e-5)
    assert torch.allclose(direction_to_angles(d)[:, 0], out.targets["angles"][:, 0], atol=1e-5)
    # Hits: PMTs permuted per event, charges untouched, input not mutated.
    assert (
        torch.equal(out.hits["charge"], batch.hits["charge"])
        and out.hits["charge"].sum() == batch.hits["charge"].sum()
    )
    assert torch.equal(
        out.hits["pmt"][batch.offsets[4] : batch.offsets[6]],
        batch.hits["pmt"][batch.offsets[4] : batch.offsets[6]],
    )
    first = slice(int(batch.offsets[0]), int(batch.offsets[1]))
    assert torch.equal(out.hits["pmt"][first], aug.permutations[IDX(1, 0, 0)][batch.hits["pmt"][first]])
    assert not torch.equal(out.hits["pmt"], batch.hits["pmt"])
    assert out.hits["pmt"].dtype == batch.hits["pmt"].dtype
    for i in range(8):  # still distinct PMTs within each event
        hits = out.hits["pmt"][batch.offsets[i] : batch.offsets[i + 1]]
        assert len(torch.unique(hits)) == len(hits)


def test_image_of_flipped_event_is_flipped_image():
    for name, flip_channels in (("sk", False), ("wcte", True)):
        det = detector(name)
        aug = augment(name)
        batch = random_hit_batch(det, 4, 60, generator=torch.Generator().manual_seed(2))
        builder = ImageBuilder(det, quantities=("charge",))
        image = builder(batch)
        flipped = builder(aug.transform_batch(batch, torch.full((4,), IDX(0, 1, 0))))
        if not flip_channels:
            assert torch.equal(flipped, image.flip(-2))
        else:  # mPMT channels are permuted inside each module; the module's total moves to the mirror pixel
            assert torch.allclose(flipped.sum(1), image.sum(1).flip(-2))
    # y flip moves a top-cap hit to the bottom cap (same x, z).
    det = detector("wcte")
    one = HitBatch(
        hits={"pmt": torch.tensor([0]), "charge": torch.tensor([1.0]), "time": torch.tensor([0.0])},
        offsets=torch.tensor([0, 1]),
    )
    moved = int(augment("wcte").transform_batch(one, torch.tensor([IDX(0, 1, 0)])).hits["pmt"][0])
    assert det.pmt_location[0] == 0 and det.pmt_location[moved] == 2
    assert np.allclose(det.pmt_positions[moved][[0, 2]], det.pmt_positions[0][[0, 2]], atol=1e-3)


def test_random_draws_deterministic_and_eval_is_identity():
    det = detector("wcte")
    aug = CylinderAugment(det, p=0.5)
    batch = random_hit_batch(det, 64, 20, generator=torch.Generator().manual_seed(3))
    a = aug(batch, torch.Generator().manual_seed(7))
    b = aug(batch, torch.Generator().manual_seed(7))
    assert torch.equal(a.hits["pmt"], b.hits["pmt"]) and torch.equal(a.targets["angles"], b.targets["angles"])
    chosen = aug.sample(2000, torch.Generator().manual_seed(1))
    labels = {aug.transform_names[i] for i in chosen.tolist()}
    assert "" not in labels and len(labels) == 8  # every valid combination occurs, nothing invalid
    frac_reflect = float((chosen % 2).float().mean())
    assert 0.45 < frac_reflect < 0.55
    assert torch.equal(CylinderAugment(det, p=0.0)(batch).hits["pmt"], batch.hits["pmt"])
    aug.eval()
    assert aug(batch) is batch


def test_disabled_transforms_are_never_drawn():
    aug = CylinderAugment(detector("toy"), reflect_x=False, rotate=False, p=1.0)
    chosen = aug.sample(100, torch.Generator().manual_seed(0))
    assert set(chosen.tolist()) == {IDX(0, 1, 0)}


def test_module_apply_reaches_the_augment_like_any_child():
    # nn.Module.apply(fn) calls apply(fn) on every child: the augment must not shadow it (it once did,
    # with a (batch, transform) signature, so model.apply(init_fn) crashed).
    parent = torch.nn.Sequential(augment("wcte"))
    seen: list[str] = []
    assert parent.apply(lambda m: seen.append(type(m).__name__)) is parent
    assert seen == ["CylinderAugment", "Sequential"]
