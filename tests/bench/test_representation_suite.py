"""``recoml bench suites=[knn]``: one row per detector with events/s and events per CPU-second (the
targets of issue 15 are per CPU-second; not a timed test: only the rows)."""

from __future__ import annotations

from hydra import initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from recoml.bench.suites import bench_representations
from recoml.utils.cli import CONFIG_MODULE


def test_knn_suite_reports_events_per_cpu_second(tmp_path) -> None:
    cfg = OmegaConf.create(
        {"detectors": ["wcte"], "device": "cpu", "representations": {"batch_size": 8, "n_iter": 1, "k": 4}}
    )
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):  # detectors by name
        rows = bench_representations(cfg, tmp_path, ["knn"])
    assert [(r["suite"], r["case"].split(",")[:2]) for r in rows] == [("knn", ["wcte", " batch 8"])]
    assert rows[0]["events_per_s"] > 0 and rows[0]["events_per_cpu_s"] > 0
