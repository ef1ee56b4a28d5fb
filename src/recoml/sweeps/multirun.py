"""Summary table of a Hydra multirun: every job's objective (its task's monitored metric), best first.

Registered as a Hydra callback in ``recoml/conf/hydra/default.yaml``. The table is rebuilt from the sweep
directory (each job's ``.hydra/overrides.yaml``, ``config.yaml`` and ``metrics.json``) after every job
and at the end of the multirun, so it also works with launchers whose jobs run in other processes or on
other machines (submitit), and a multirun that stops early still leaves the table of the jobs it ran.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from recoml.io.atomic import atomic_output, write_text
from recoml.sweeps.tables import to_markdown

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

SUMMARY_STEM = "summary"


def _job_record(job_dir: Path, sweep_dir: Path) -> dict[str, Any]:
    overrides = [str(o) for o in OmegaConf.load(job_dir / ".hydra" / "overrides.yaml")]
    config_path = job_dir / "config.yaml"
    config = OmegaConf.load(config_path if config_path.exists() else job_dir / ".hydra" / "config.yaml")
    metrics_path = job_dir / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else None
    return {
        "job": str(job_dir.relative_to(sweep_dir)),
        "overrides": {key: value for key, _, value in (o.partition("=") for o in overrides)},
        "monitor": OmegaConf.select(config, "task.monitor", default=None, throw_on_resolution_failure=False),
        "mode": OmegaConf.select(
            config, "task.monitor_mode", default="min", throw_on_resolution_failure=False
        ),
        "metrics": metrics,
    }


def _job_sort_key(job: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in Path(job).parts)


def summarize(sweep_dir: str | Path) -> pd.DataFrame | None:
    """The table of a sweep directory's training jobs (None when none of its jobs trains anything)."""
    import pandas as pd

    sweep_dir = Path(sweep_dir)
    job_dirs = sorted(
        (p.parent.parent for p in sweep_dir.glob("**/.hydra/overrides.yaml")),
        key=lambda p: _job_sort_key(str(p.relative_to(sweep_dir))),
    )
    jobs = [_job_record(d, sweep_dir) for d in job_dirs]
    jobs = [j for j in jobs if j["monitor"]]
    if not jobs:
        return None
    monitors = list(dict.fromkeys(j["monitor"] for j in jobs))
    modes = list(dict.fromkeys(j["mode"] for j in jobs))
    if len(modes) > 1:
        log.warning("multirun %s mixes monitor modes %s: sorted by the first job's", sweep_dir, modes)
    maximize = modes[0] == "max"
    objective = monitors[0] if len(monitors) == 1 else "objective"
    all_keys = list(dict.fromkeys(k for j in jobs for k in j["overrides"]))
    varying = [k for k in all_keys if len({j["overrides"].get(k) for j in jobs}) > 1]
    metric_names = sorted({k for j in jobs for k in (j["metrics"] or {})} - {objective})
    rows = []
    for j in jobs:
        metrics = j["metrics"] or {}
        value = metrics.get(j["monitor"])
        if j["metrics"] is None:
            status = "no metrics.json (failed or unfinished)"
        elif value is None or not math.isfinite(value):
            status = f"{j['monitor']} missing or not finite"
        else:
            status = "ok"
        rows.append(
            {
                "job": j["job"],
                **{k: j["overrides"].get(k, "") for k in varying},
                objective: value,
                **({"metric": j["monitor"]} if objective == "objective" else {}),
                "status": status,
                **{f"metric:{k}": metrics.get(k) for k in metric_names},
            }
        )
    frame = pd.DataFrame(rows)
    ok = frame["status"] == "ok"
    ranked = frame[ok].sort_values(objective, ascending=not maximize, kind="stable")
    frame = pd.concat([ranked, frame[~ok]], ignore_index=True)
    rank = [i + 1 if s == "ok" else None for i, s in enumerate(frame["status"])]
    frame.insert(0, "rank", pd.array(rank, dtype="Int64"))
    frame.attrs.update(objective=objective, maximize=maximize, varying=varying)
    return frame


def write_summary(sweep_dir: str | Path) -> tuple[Path, Path] | None:
    """``summary.csv`` (every metric) and ``summary.md`` (objective and swept overrides) in ``sweep_dir``."""
    sweep_dir = Path(sweep_dir)
    frame = summarize(sweep_dir)
    if frame is None:
        return None
    csv, md = sweep_dir / f"{SUMMARY_STEM}.csv", sweep_dir / f"{SUMMARY_STEM}.md"
    with atomic_output(csv) as tmp:  # unique temporary names: jobs elsewhere may write at the same time
        frame.rename(columns=lambda c: c.removeprefix("metric:")).to_csv(tmp, index=False)
    short = frame[[c for c in frame.columns if not c.startswith("metric:")]]
    best = "highest" if frame.attrs["maximize"] else "lowest"
    title = f"# Multirun {sweep_dir.name}: {frame.attrs['objective']}, {best} first\n\n"
    write_text(md, title + to_markdown(short))
    return csv, md


class MultirunSummary(Callback):
    """Hydra callback: rewrite the sweep's summary after every job and at the end of the multirun."""

    def on_job_end(self, config: DictConfig, job_return: Any = None, **kwargs: Any) -> None:
        if config.hydra.mode == RunMode.MULTIRUN:
            self._write(config)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        paths = self._write(config)
        if paths is not None:
            log.info("multirun summary: %s (and .csv)", paths[1])

    @staticmethod
    def _write(config: DictConfig) -> tuple[Path, Path] | None:
        try:
            return write_summary(config.hydra.sweep.dir)
        except Exception as err:  # noqa: BLE001 - a summary must never fail the jobs it describes
            log.warning("multirun summary not written: %s: %s", type(err).__name__, err)
            return None
