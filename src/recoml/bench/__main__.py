"""``python -m recoml.bench [suites=[...]] [detectors=[...]] [device=cuda]``: events/s for simulation,
loading, representation building and training; a table on the console and bench.json in the run
directory."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig
from rich.console import Console
from rich.table import Table

from recoml.bench.peer import peer_table
from recoml.bench.suites import run
from recoml.io.provenance import write_json
from recoml.utils.cli import CONFIG_PATH, report_errors, save_config


def machine() -> str:
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} thread(s), {gpu}"


@hydra.main(version_base="1.3", config_path=CONFIG_PATH, config_name="bench")
@report_errors
def main(cfg: DictConfig) -> None:
    save_config(cfg, cfg.paths.output_dir)
    rows = run(cfg)
    table = Table(title=f"recoml throughput ({machine()})")
    for col in ("suite", "case", "device", "events/s", "events/CPU-s", "ceiling events/s", "of ceiling"):
        table.add_column(col, justify="right" if "/" in col or col == "of ceiling" else "left")
    for r in rows:
        if r["suite"] == "peer":  # its own table below
            continue
        table.add_row(
            r["suite"],
            r["case"],
            r["device"],
            f"{r['events_per_s']:,.0f}",
            f"{r['events_per_cpu_s']:,.0f}" if "events_per_cpu_s" in r else "",
            f"{r['ceiling_events_per_s']:,.0f}" if "ceiling_events_per_s" in r else "",
            f"{r['fraction_of_ceiling']:.0%}" if "fraction_of_ceiling" in r else "",
        )
    Console().print(table)
    peer = Path(cfg.paths.output_dir) / "peer.json"
    if peer.is_file():
        Console().print(peer_table(json.loads(peer.read_text()), machine()))
    write_json(f"{cfg.paths.output_dir}/bench.json", {"machine": machine(), "results": rows})


if __name__ == "__main__":
    main()
