"""The kNN rows of ``recoml bench suites=[graphs]``: each path and the library's own floor are measured."""

from __future__ import annotations

from omegaconf import OmegaConf

from recoml.bench.graphs import knn_rows


def test_knn_rows_measure_both_paths_and_the_library_floor() -> None:
    cfg = OmegaConf.create(
        {"graphs": {"k": 4, "hits": [40, 400], "hits_per_batch": 800, "max_hits_blocks": 100, "repeat": 1}}
    )
    rows = knn_rows(cfg)
    cases = [row["case"] for row in rows]
    assert cases == [
        "kNN k=4, 40 hits/event, kd-tree",
        "kNN k=4, 40 hits/event, blocks",
        "kNN k=4, 40 hits/event, pykdtree query alone (this machine's floor)",
        "kNN k=4, 400 hits/event, kd-tree",
        "kNN k=4, 400 hits/event, pykdtree query alone (this machine's floor)",
    ]
    assert all(row["events_per_s"] > 0 for row in rows)
