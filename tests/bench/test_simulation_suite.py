"""``recoml bench suites=[simulation] simulation.effects=true``: one row per detector and per physics
effect switched off, each with events/s and events per CPU-second (not a timed test: only the rows)."""

from __future__ import annotations

from hydra import initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from recoml.bench.suites import SIMULATION_EFFECTS, bench_simulation
from recoml.utils.cli import CONFIG_MODULE


def test_simulation_suite_reports_the_cost_of_each_effect() -> None:
    cfg = OmegaConf.create({"detectors": ["wcte"], "simulation": {"n_events": {"wcte": 20}, "effects": True}})
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):  # detectors by name
        rows = bench_simulation(cfg)
        plain = bench_simulation(
            OmegaConf.create({"detectors": ["wcte"], "simulation": {"n_events": {"wcte": 20}}})
        )
    cases = [r["case"] for r in rows]
    assert cases == ["wcte"] + [f"wcte without {e}" for e in SIMULATION_EFFECTS] + [
        "wcte without all of them"
    ]
    assert all(r["events_per_s"] > 0 and r["events_per_cpu_s"] > 0 for r in rows)
    assert [r["case"] for r in plain] == ["wcte"]
