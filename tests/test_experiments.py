"""Every ``experiment=`` recipe composes to what its name says (``<detector>/<task>_<model>``) and runs a
fast dev run (``debug=fdr``: one batch of train, validation and test) on a few simulated events."""

from __future__ import annotations

from pathlib import Path

import pytest

from recoml.training import train
from tests.helpers import CONF_DIR, DATA_DIR, make_cfg

RECIPES = sorted(
    str(p.relative_to(CONF_DIR / "experiment").with_suffix(""))
    for p in (CONF_DIR / "experiment").rglob("*.yaml")
)

#: What each recipe sets up: (detector, model, task); a new recipe needs its line here.
EXPECTED = {
    "wcte/e_mu_cnn": ("wcte", "resnet18", "pid"),
    "wcte/pid_gnn": ("wcte", "gnn", "pid"),
    "iwcd/multi_pointnet": ("iwcd", "pointnet", "multi"),
    "hk/energy_gnn": ("hk", "gnn", "energy"),
    "sk/vertex_cnn": ("sk", "resnet18", "vertex"),
    "trackml/edge_classifier": ("trackml", "interaction_network", "edge_classification"),
    "tracking/edge_classifier": ("toy_tracker", "interaction_network", "edge_classification"),
    "tracking/metric_learning": ("toy_tracker", "metric_learning", "metric_learning"),
    "tracking/hit_classification": ("toy_tracker", "tracker_gnn", "hit_classification"),
}
#: A few events of the recipe's detector, simulated into tmp_path, and a small network of its kind.
WATER_SIM = ["dataset.simulate.n_events=24", "dataset.fractions=[0.5,0.25,0.25]"]
TRACKER_SIM = [
    "dataset.simulate.n_events=4",
    "dataset.simulate.n_particles=40",
    "dataset.fractions=[0.5,0.25,0.25]",
]
SMALL_NET = {
    "resnet18": ["model.net.width=8"],
    "gnn": ["model.net.hidden=16", "model.net.k=4", "model.representation.k=4"],
    "pointnet": ["model.net.hidden=[16,16]", "model.net.head_hidden=16"],
}


def test_the_issue_recipes_ship() -> None:
    assert {"wcte/e_mu_cnn", "hk/energy_gnn", "iwcd/multi_pointnet", "trackml/edge_classifier"} <= set(
        RECIPES
    )


def test_every_recipe_has_its_expectation() -> None:
    assert set(RECIPES) == set(EXPECTED)


def test_the_e_mu_recipe_trains_two_classes_on_its_own_store() -> None:
    cfg = make_cfg(Path("/nonexistent"), Path("/data"), ["experiment=wcte/e_mu_cnn"])
    assert list(cfg.task.class_names) == ["e", "mu"] and list(cfg.task.label_values) == [1, 2]
    assert list(cfg.dataset.simulate.particles) == ["e-", "mu-"]
    assert cfg.dataset.path == "/data/toy_wcte_e_mu.h5"


def test_every_recipe_is_listed_in_the_readme() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    missing = [r for r in RECIPES if r not in readme]
    assert not missing, f"README's recipe list lacks {missing}"


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_runs_a_fast_dev_run(recipe: str, tmp_path: Path) -> None:
    trackml = recipe.startswith("trackml/")
    extra = [f"detector.path={DATA_DIR / 'trackml' / 'detectors.csv.gz'}"] if trackml else []
    cfg = make_cfg(tmp_path, tmp_path / "data", [f"experiment={recipe}", "debug=fdr", *extra])
    assert (cfg.detector.name, cfg.model.name, cfg.task.name) == EXPECTED[recipe]
    sim = TRACKER_SIM if cfg.detector.name in ("toy_tracker", "trackml") else WATER_SIM
    cfg = make_cfg(
        tmp_path,
        tmp_path / "data",
        [f"experiment={recipe}", "debug=fdr", *extra, *sim, *SMALL_NET.get(cfg.model.name, [])],
    )
    metrics = train(cfg)
    assert (tmp_path / "run" / "config.yaml").is_file()
    assert any(k.startswith("test/") for k in metrics), metrics
