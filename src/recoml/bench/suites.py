"""The suites behind ``python -m recoml.bench`` (events/s, never asserted by tests)."""

from __future__ import annotations

import functools
import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from hydra import compose
from hydra.utils import instantiate
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from recoml.bench.graphs import bench_graphs, cpu_seconds
from recoml.bench.peer import bench_peer
from recoml.contracts.batch import HitBatch
from recoml.data.dataset import DEFAULT_HIT_FIELDS, DEFAULT_TARGET_FIELDS, EventDataset
from recoml.data.representations import GraphBuilder, PointCloudBuilder
from recoml.data.samplers import TrainBatchSampler
from recoml.errors import DataError
from recoml.families.water_cherenkov import PhysicsConfig, simulate, simulate_to_store
from recoml.families.water_cherenkov.detector import WCDetector
from recoml.families.water_cherenkov.images import ImageBuilder
from recoml.tasks.module import RecoModule
from recoml.utils.config import config_dict

log = logging.getLogger(__name__)


def detector_by_name(name: str) -> WCDetector:
    return instantiate(compose(config_name="train", overrides=[f"detector={name}"]).detector)


def timed(fn: Callable[[], Any], n_iter: int, sync: Callable[[], None] = lambda: None) -> float:
    """Seconds per call, after one warm-up call."""
    fn()
    sync()
    t0 = time.perf_counter()
    for _ in range(n_iter):
        fn()
    sync()
    return (time.perf_counter() - t0) / n_iter


def _sync(device: torch.device) -> Callable[[], None]:
    return torch.cuda.synchronize if device.type == "cuda" else (lambda: None)


def simulated_batch(detector: WCDetector, n_events: int, workdir: Path) -> HitBatch:
    """A HitBatch of real toy events (not random hits), so sizes and hit patterns are realistic."""

    path = workdir / f"bench_{detector.name}_{n_events}.h5"
    if not path.exists():
        simulate_to_store(detector, path, n_events=n_events, seed=123)
    ds = EventDataset(path, target_fields=("labels", "energies", "positions", "directions", "angles"))
    return ds[list(range(len(ds)))]


def simulation_rate(detector: WCDetector, n_events: int, **kwargs: Any) -> tuple[float, float]:
    """Events per second and per CPU-second of the water-Cherenkov toy simulation (after a warm-up that
    builds lookup tables); the second is robust on a shared machine."""

    simulate(detector, 8, **kwargs)
    t0, c0 = time.perf_counter(), time.process_time()
    simulate(detector, n_events, **kwargs)
    rate, cpu_rate = n_events / (time.perf_counter() - t0), n_events / (time.process_time() - c0)
    log.info(
        "simulated %d %s events at %.0f events/s (%.0f per CPU-s)", n_events, detector.name, rate, cpu_rate
    )
    return rate, cpu_rate


#: Physics effects of the toy switched off one at a time by ``simulation.effects=true``: their cost.
SIMULATION_EFFECTS: dict[str, dict[str, Any]] = {
    "reflection": {"pmt_reflectivity": 0.0, "wall_reflectivity": 0.0},
    "chromatic dispersion": {"chromatic_dispersion": False},
    "decay electrons": {"decay_electrons": False},
    "Rayleigh scattering": {"scattering_length": float("inf")},
    "trigger": {"trigger": False},
    "muon scattering and delta rays": {"muon_multiple_scattering": False, "muon_delta_rays": False},
}


def loading_rate(
    path: str | Path,
    batch_size: int = 512,
    num_workers: int = 0,
    n_batches: int = 200,
    hit_fields: Sequence[str] = DEFAULT_HIT_FIELDS,
    target_fields: Sequence[str] = DEFAULT_TARGET_FIELDS,
    warmup: int = 5,
) -> float:
    """Events/s of shuffled training batches through a DataLoader (after ``warmup`` batches)."""
    ds = EventDataset(path, hit_fields=hit_fields, target_fields=target_fields)
    sampler = TrainBatchSampler(len(ds), batch_size, seed=0)
    if len(sampler) == 0:
        raise DataError(f"{path}: no events to benchmark")
    loader = DataLoader(
        ds, sampler=sampler, batch_size=None, num_workers=num_workers, persistent_workers=num_workers > 0
    )
    done, events, epoch = 0, 0, 0
    t0 = time.perf_counter()
    while done < n_batches + warmup:
        sampler.set_epoch(epoch)
        for batch in loader:
            done += 1
            if done == warmup:
                t0 = time.perf_counter()
            elif done > warmup:
                events += batch.n_events
            if done >= n_batches + warmup:
                break
        epoch += 1
    return events / (time.perf_counter() - t0)


def bench_simulation(cfg: DictConfig) -> list[dict[str, Any]]:
    rows = []
    variants: dict[str, dict[str, Any]] = {"": {}}
    if cfg.simulation.get("effects", False):
        variants |= {f" without {effect}": off for effect, off in SIMULATION_EFFECTS.items()}
        variants[" without all of them"] = {
            k: v for off in SIMULATION_EFFECTS.values() for k, v in off.items()
        }
    for name in cfg.detectors:
        n = int(cfg.simulation.n_events.get(name, 500))
        for suffix, off in variants.items():
            rate, cpu_rate = simulation_rate(detector_by_name(name), n, physics=PhysicsConfig(**off))
            rows.append(
                {
                    "suite": "simulation",
                    "case": name + suffix,
                    "events_per_s": rate,
                    "events_per_cpu_s": cpu_rate,
                    "device": "cpu",
                }
            )
    return rows


def bench_loading_suite(cfg: DictConfig, workdir: Path) -> list[dict[str, Any]]:

    path = workdir / "bench_loading_wcte.h5"
    if not path.exists():
        simulate_to_store(detector_by_name("wcte"), path, n_events=int(cfg.loading.n_events), seed=7)
    rows = []
    for workers in cfg.loading.workers:
        rate = loading_rate(path, batch_size=int(cfg.loading.batch_size), num_workers=int(workers))
        rows.append(
            {
                "suite": "loading",
                "case": f"wcte hdf5, {workers} workers",
                "events_per_s": rate,
                "device": "cpu",
            }
        )
    return rows


def bench_representations(cfg: DictConfig, workdir: Path, suites: list[str]) -> list[dict[str, Any]]:

    device = torch.device(cfg.device)
    r = cfg.representations
    builders = {
        # As the model configs build them (reused output buffers).
        "images": lambda det: ImageBuilder(det, reuse_output=True),
        "knn": lambda det: GraphBuilder(det, k=int(r.k), reuse_output=True),
        "points": lambda det: PointCloudBuilder(det),
    }
    rows = []
    for name in cfg.detectors:
        det = detector_by_name(name)
        batch = simulated_batch(det, int(r.batch_size), workdir).to(device)
        for suite in suites:
            builder = builders[suite](det).to(device)
            build = functools.partial(builder, batch)
            row: dict[str, Any] = {
                "suite": suite,
                "case": f"{name}, batch {batch.n_events}, {batch.n_hits / batch.n_events:.0f} hits/event",
                "device": str(device),
            }
            with torch.no_grad():
                row["events_per_s"] = batch.n_events / timed(build, int(r.n_iter), _sync(device))
                if device.type == "cpu":  # the targets are per CPU-second: robust on a shared machine
                    row["events_per_cpu_s"] = batch.n_events / cpu_seconds(build, int(r.n_iter))
            rows.append(row)
    return rows


def step_times(module, host_batch: HitBatch, device: torch.device, precision: str, n_steps: int):
    """Seconds per optimizer step: full pipeline from a host batch, and model-only on device inputs."""
    opt = torch.optim.AdamW(module.parameters(), lr=1e-4)
    dtype = torch.bfloat16 if "bf16" in precision else None

    def step(batch: HitBatch, inputs=None) -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            out = module.net(inputs) if inputs is not None else module(batch)
            loss = module.task.loss(out, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    dev_batch = host_batch.to(device)
    with torch.no_grad():
        inputs = module.representation(dev_batch)
    full = timed(lambda: step(host_batch.to(device, non_blocking=True)), n_steps, _sync(device))
    model_only = timed(lambda: step(dev_batch, inputs), n_steps, _sync(device))
    return full, model_only


def bench_training(cfg: DictConfig, workdir: Path) -> list[dict[str, Any]]:
    """Full pipeline (HitBatch on the host -> device -> representation -> step) vs the model-only ceiling
    (the same step on the representation's output already on the device)."""

    device = torch.device(cfg.device)
    t = cfg.train
    rows = []
    for name in cfg.detectors:
        det = detector_by_name(name)
        host_batch = simulated_batch(det, int(t.batch_size), workdir)
        for model in t.models:
            train_cfg = compose(config_name="train", overrides=[f"detector={name}", f"model={model}"])
            train_cfg.paths.output_dir = str(workdir)
            module = RecoModule(config_dict(train_cfg)).to(device)
            module.fit_statistics([host_batch])
            seconds_full, seconds_model = step_times(
                module, host_batch, device, str(t.precision), int(t.n_steps)
            )
            n = host_batch.n_events
            row = {
                "suite": "train",
                "case": f"{model} on {name} ({t.precision})",
                "events_per_s": n / seconds_full,
                "ceiling_events_per_s": n / seconds_model,
                "fraction_of_ceiling": seconds_model / seconds_full,
                "device": str(device),
            }
            # Said as soon as measured: a long suite that is cut short still leaves its figures.
            log.info(
                "%s: %.0f events/s, ceiling %.0f events/s", row["case"], n / seconds_full, n / seconds_model
            )
            rows.append(row)
    return rows


def run(cfg: DictConfig, workdir: Path | None = None) -> list[dict[str, Any]]:
    torch.set_num_threads(int(cfg.threads))
    suites = list(cfg.suites)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(workdir or tmp)
        rows: list[dict[str, Any]] = []
        if "simulation" in suites:
            rows += bench_simulation(cfg)
        if "loading" in suites:
            rows += bench_loading_suite(cfg, work)
        reps = [s for s in suites if s in ("images", "knn", "points")]
        if reps:
            rows += bench_representations(cfg, work, reps)
        if "train" in suites:
            rows += bench_training(cfg, work)
        if "graphs" in suites:
            rows += bench_graphs(cfg)
        if "peer" in suites:
            rows += bench_peer(cfg, work)
    return rows
