"""The ``peer`` suite: WatChMaL's own dataset classes, DataLoader and ResNet-18 next to recoml's pipeline.

Both read the same synthetic WCTE and HK files, written once in WatChMaL's HDF5 layout (the arrays of
``watchmal.dataset.h5_dataset.H5CommonDataset``: ``event_hits_index``, ``hit_pmt`` int32, ``hit_time`` and
``hit_charge`` float32, per-event ``labels``/``energies``/``positions``/``angles``), with WatChMaL's image
map files (``mpmt_image_positions`` for ``CNNmPMTDataset``, ``pmt_image_positions`` for ``CNNDataset``)
made from recoml's detector map, so both sides draw the same images. WatChMaL is imported at run time
from ``bench.peer.watchmal`` (a directory holding the ``watchmal`` package, e.g. a clone of
github.com/WatChMaL/WatChMaL); nothing of it is copied here, and without it the suite is skipped.

Cases (``peer.json``: one entry each, both rates and ``ratio`` = recoml / WatChMaL):

* ``<det>_batches_<n>w``: image batches through each side's DataLoader with ``n`` workers, the way its
  training consumes them (WatChMaL: ``get_data_loader`` with its ``SubsetRandomSampler``; recoml: the
  datamodule's loader and the model's representation);
* ``wcte_train_w64`` (and ``hk_train_w64`` when asked for): a ResNet-18 (width 64, circular padding)
  training step, WatChMaL's ``ClassifierEngine`` step vs recoml's ``RecoModule``, on ``device`` (the
  GPU check runs it on the GPU with 2 workers: the issue's GPU training targets are ratios to WatChMaL).

Rates are events per CPU-second of the process and its loader workers (``psutil``) and events per wall
second, with the share of that CPU spent in the training process (``training_process_cpu_share``); each
repeat runs WatChMaL then recoml (interleaved; a side starts once the other's workers have finished the
batches they prefetched, :func:`settle`), the medians are reported. A worker case run with its
0-worker case also gets ``vs_0w``: each side's events/s with the workers over its events/s in one
process ("2 workers on 2 idle cores >= 1.7x one process"; it measures the load too on a busy box).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import h5py
import numpy as np
import psutil
import torch
from hydra import compose
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from rich.table import Table

from recoml.data.datamodule import EventDataModule
from recoml.errors import ConfigError
from recoml.families.water_cherenkov.detector import WCDetector
from recoml.io.atomic import atomic_output
from recoml.io.provenance import write_json
from recoml.tasks.module import RecoModule
from recoml.utils.config import config_dict

log = logging.getLogger(__name__)

#: The entries of peer.json, in order (``hk_train_w64`` only when asked for: an HK step takes seconds on
#: a CPU; it is the GPU check's HK training row).
CASES = (
    "wcte_batches_0w",
    "wcte_batches_2w",
    "hk_batches_0w",
    "hk_batches_2w",
    "wcte_train_w64",
    "hk_train_w64",
)
#: Per side, the two rates of a case.
RATES = ("events_per_cpu_s", "events_per_s")


def import_watchmal(directory: str | Path | None) -> dict[str, ModuleType] | None:
    """WatChMaL's dataset, model and engine modules imported from ``directory``; None (and one log line)
    when no directory is given or it holds no ``watchmal`` package."""
    if not directory:
        log.info("peer suite skipped: no WatChMaL checkout given (bench.peer.watchmal=DIR)")
        return None
    root = Path(directory).expanduser().resolve()
    if not (root / "watchmal").is_dir():
        log.info("peer suite skipped: %s holds no 'watchmal' package", root)
        return None
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    names = {
        "mpmt": "watchmal.dataset.cnn_mpmt.cnn_mpmt_dataset",
        "pmt": "watchmal.dataset.cnn.cnn_dataset",
        "resnet": "watchmal.model.resnet",
        "engine": "watchmal.engine.classification",
        "loaders": "watchmal.dataset.data_utils",
    }
    try:
        modules = {key: importlib.import_module(name) for key, name in names.items()}
    except ImportError as err:
        raise ConfigError(
            f"bench.peer.watchmal={root}: WatChMaL cannot be imported ({err}); install what it needs "
            "(its requirements.txt) in this environment"
        ) from err
    found = Path(modules["mpmt"].__file__ or "").resolve()
    if root not in found.parents:
        raise ConfigError(
            f"bench.peer.watchmal={root}: 'watchmal' was imported from {found.parent}, not from this "
            "directory (another WatChMaL is installed); uninstall it or point bench.peer.watchmal there"
        )
    return modules


@dataclass(frozen=True)
class PeerFiles:
    """One detector's files: events, splits, and WatChMaL's image map."""

    detector: WCDetector
    h5: Path
    splits: Path
    image_map: Path


def write_peer_files(
    detector: WCDetector, directory: Path, n_events: int, hits_per_event: int, seed: int = 0
) -> PeerFiles:
    """Synthetic events in WatChMaL's layout (kept when already there): ``hits_per_event`` distinct PMTs
    per event (digitized hits: one per PMT), charges ~ exponential, times ~ 1000 +- 30 ns."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"peer_{detector.name}_{n_events}x{hits_per_event}"
    files = PeerFiles(
        detector,
        directory / f"{stem}.h5",
        directory / f"{stem}_splits.npz",
        directory / f"{detector.name}_image_positions.npz",
    )
    if not files.image_map.exists():
        write_image_map(detector, files.image_map)
    if not files.splits.exists():
        order = np.random.default_rng(seed).permutation(n_events)
        n_val = n_events // 20
        with atomic_output(files.splits, suffix=".npz") as tmp, tmp.open("wb") as f:
            np.savez(
                f,
                train_idxs=np.sort(order[2 * n_val :]),
                val_idxs=np.sort(order[:n_val]),
                test_idxs=np.sort(order[n_val : 2 * n_val]),
            )
    if files.h5.exists():
        return files
    rng = np.random.default_rng(seed)
    n_pmts, hits = detector.n_pmts, min(hits_per_event, detector.n_pmts)
    # Distinct PMTs per event: the first `hits` of a random permutation (argsort of random keys).
    pmt = np.empty((n_events, hits), dtype=np.int32)
    for start in range(0, n_events, 256):
        keys = rng.random((min(256, n_events - start), n_pmts), dtype=np.float32)
        pmt[start : start + len(keys)] = np.argpartition(keys, hits - 1, axis=1)[:, :hits]
    n_hits = n_events * hits
    with atomic_output(files.h5) as tmp, h5py.File(tmp, "w") as f:
        f["event_hits_index"] = np.arange(n_events, dtype=np.int64) * hits
        f["hit_pmt"] = pmt.reshape(-1)
        f["hit_time"] = (1000 + 30 * rng.standard_normal(n_hits)).astype(np.float32)
        f["hit_charge"] = rng.exponential(2.0, n_hits).astype(np.float32)
        f["labels"] = rng.integers(0, 3, n_events).astype(np.int32)
        f["energies"] = rng.uniform(100, 1000, (n_events, 1)).astype(np.float32)
        f["positions"] = rng.uniform(-100, 100, (n_events, 1, 3)).astype(np.float32)
        f["angles"] = np.stack(
            [np.arccos(rng.uniform(-1, 1, n_events)), rng.uniform(-np.pi, np.pi, n_events)], axis=1
        ).astype(np.float32)
        f["event_ids"] = np.arange(n_events, dtype=np.int32)
        f["root_files"] = np.array([f"{stem}.root"] * n_events, dtype=object).astype(h5py.string_dtype())
    log.info("peer: wrote %d %s events x %d hits to %s", n_events, detector.name, hits, files.h5)
    return files


def write_image_map(detector: WCDetector, path: Path) -> None:
    """WatChMaL's (row, column) per module: ``mpmt_image_positions`` for mPMT detectors (module = PMT //
    19, ``CNNmPMTDataset``), ``pmt_image_positions`` for single PMTs (``CNNDataset``)."""
    assert detector.image_pixel is not None and detector.image_shape is not None
    width = int(detector.image_shape[1])
    per_module = int(detector.pmts_per_module)
    pixel = np.asarray(detector.image_pixel, dtype=np.int64)[::per_module]
    rows_cols = np.stack([pixel // width, pixel % width], axis=1)
    with atomic_output(path, suffix=".npz") as tmp, tmp.open("wb") as f:
        if per_module > 1:
            np.savez(f, mpmt_image_positions=rows_cols)
        else:
            np.savez(f, pmt_image_positions=rows_cols)


# -- the two sides --------------------------------------------------------------------------------------


def watchmal_engine(
    wm: dict[str, ModuleType],
    files: PeerFiles,
    batch_size: int,
    workers: int,
    workdir: Path,
    width: int = 0,
    device: str = "cpu",
) -> Any:
    """WatChMaL's ClassifierEngine on ``device`` with its train loader (and a ResNet-18 when ``width``),
    configured as its own configs and main.py do (``get_data_loader``, ``SubsetRandomSampler``, the model
    moved to the device, AdamW, cross-entropy)."""
    on_gpu = torch.device(device).type != "cpu"
    if files.detector.pmts_per_module > 1:
        dataset = {
            "_target_": "watchmal.dataset.cnn_mpmt.cnn_mpmt_dataset.CNNmPMTDataset",
            "h5file": str(files.h5),
            "mpmt_positions_file": str(files.image_map),
            "channels": ["charge", "time"],
            "channel_scale_factor": {"time": 10, "charge": 1},
        }
    else:
        dataset = {
            "_target_": "watchmal.dataset.cnn.cnn_dataset.CNNDataset",
            "h5file": str(files.h5),
            "pmt_positions_file": str(files.image_map),
        }
    sampler = {"_target_": "torch.utils.data.sampler.SubsetRandomSampler"}
    model = torch.nn.Identity()
    if width:
        if width != 64:
            raise ConfigError(f"bench.peer: WatChMaL's ResNet-18 has width 64 only, got {width}")
        channels = 2 * files.detector.pmts_per_module
        model = (
            wm["resnet"]
            .resnet18(num_input_channels=channels, num_output_channels=3, conv_pad_mode="circular")
            .to(device)
        )
    # WatChMaL's engine prints parameter counts and writes CSV logs: both kept out of the way.
    with contextlib.redirect_stdout(io.StringIO()):
        engine = wm["engine"].ClassifierEngine("labels", model, 0, device, f"{workdir}/watchmal_")
        if workers:
            loader = wm["loaders"].get_data_loader(
                OmegaConf.create(dataset),
                batch_size,
                OmegaConf.create(sampler),
                workers,
                False,
                on_gpu,
                0,
                split_path=str(files.splits),
                split_key="train_idxs",
            )
        else:
            # get_data_loader always asks for a 'fork' context, which torch refuses without workers: the same
            # dataset, sampler and loader arguments otherwise.
            indices = np.load(files.splits)["train_idxs"]
            loader = torch.utils.data.DataLoader(
                instantiate(dataset),
                sampler=instantiate(sampler, indices),
                batch_size=batch_size,
                pin_memory=on_gpu,
            )
        # What ClassifierEngine.configure_data_loaders does with a label_set (labels become int64).
        loader.dataset.set_target("labels")
        loader.dataset.map_labels([0, 1, 2])
        engine.data_loaders["train"] = loader
        if width:
            engine.configure_loss({"_target_": "torch.nn.CrossEntropyLoss"})
            engine.configure_optimizers({"_target_": "torch.optim.AdamW", "lr": 1e-4})
    return engine


def recoml_module(
    files: PeerFiles, batch_size: int, workers: int, workdir: Path, width: int = 64, device: str = "cpu"
) -> tuple[RecoModule, EventDataModule]:
    """recoml's training pieces for the same file: the ResNet-18 config at ``width``, its datamodule
    (WatChMaL's split file) and statistics fitted on a training sample, on ``device``."""
    cfg = compose(
        config_name="train",
        overrides=[f"detector={files.detector.name}", "model=resnet18", f"model.net.width={width}"],
    )
    cfg.paths.output_dir = str(workdir)
    module = RecoModule(config_dict(cfg))
    datamodule = EventDataModule(
        files.h5,
        split_path=files.splits,
        batch_size=batch_size,
        num_workers=workers,
        pin_memory=torch.device(device).type != "cpu",
    )
    module.fit_statistics(datamodule.statistics_sample(2048))
    if torch.device(device).type == "cpu":  # as training does: on a GPU the inputs are built there
        datamodule.build_in_workers(module.representation)
    return module.to(device).train(), datamodule


# -- measuring ----------------------------------------------------------------------------------------


def endless(loader: Any) -> Iterator[Any]:
    """Batches of ``loader`` epoch after epoch (persistent workers stay up between epochs)."""
    while True:
        yield from loader


def worker_pids(loader: Any) -> list[int]:
    """Process ids of a DataLoader's live workers (none without workers)."""
    iterator = getattr(loader, "_iterator", None)
    return [w.pid for w in getattr(iterator, "_workers", []) if w.pid is not None]


def cpu_seconds(pids: list[int], main: bool = True) -> float:
    """CPU seconds (user + system) so far of ``pids`` and (``main``) this process."""
    total = time.process_time() if main else 0.0
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            t = psutil.Process(pid).cpu_times()
            total += t.user + t.system
    return total


def settle(loader: Any, timeout_s: float = 30.0, interval_s: float = 0.05) -> None:
    """Wait until ``loader``'s workers are idle (they finished the batches they prefetched), so that the
    other side's measurement has the cores to itself: a WatChMaL worker's 4 prefetched WCTE batches take
    about 0.45 CPU-s, most of a recoml window of 96 batches on 2 cores. Idle: no worker runnable and no
    CPU time added over an interval (a busy worker the kernel did not schedule is still runnable)."""
    pids = worker_pids(loader)
    deadline, last = time.monotonic() + timeout_s, cpu_seconds(pids, main=False)
    while pids and time.monotonic() < deadline:
        time.sleep(interval_s)
        now = cpu_seconds(pids, main=False)
        if now - last < 0.2 * interval_s and not any(_runnable(pid) for pid in pids):
            return
        last = now


def _runnable(pid: int) -> bool:
    with contextlib.suppress(psutil.NoSuchProcess):
        return psutil.Process(pid).status() == psutil.STATUS_RUNNING
    return False


@dataclass
class Side:
    """One side of a case: a step that consumes one batch and returns its number of events."""

    batches: Iterator[Any]
    step: Callable[[Any], int]
    loader: Any
    per_cpu: list[float]
    per_wall: list[float]
    #: Fraction of the CPU time spent in the training process (the rest: its loader workers).
    main_share: list[float] = field(default_factory=list)

    def measure(self, n_batches: int, warmup: int) -> None:
        for _ in range(warmup):  # includes the batches workers prefetched while the other side ran
            self.step(next(self.batches))
        pids = worker_pids(self.loader)
        c0, m0, t0, events = cpu_seconds(pids), time.process_time(), time.perf_counter(), 0
        for _ in range(n_batches):
            events += self.step(next(self.batches))
        wall, cpu = time.perf_counter() - t0, cpu_seconds(pids) - c0
        self.per_cpu.append(events / cpu)
        self.per_wall.append(events / wall)
        main = time.process_time() - m0  # read a moment after `cpu`: at most `cpu` (clock granularity)
        self.main_share.append(min(main / cpu, 1.0))

    def medians(self) -> dict[str, float]:
        return {
            "events_per_cpu_s": statistics.median(self.per_cpu),
            "events_per_s": statistics.median(self.per_wall),
            "training_process_cpu_share": statistics.median(self.main_share),
        }


def interleaved(sides: dict[str, Side], repeats: int, n_batches: int, warmup: int) -> dict[str, Any]:
    for _ in range(repeats):
        for side in sides.values():
            side.measure(n_batches, warmup)
            settle(side.loader)
    entry: dict[str, Any] = {name: side.medians() for name, side in sides.items()}
    entry["ratio"] = {r: entry["recoml"][r] / entry["watchmal"][r] for r in RATES}
    entry["repeats"] = repeats
    entry["batches_per_repeat"] = n_batches
    return entry


def batches_case(
    wm: dict[str, ModuleType], files: PeerFiles, p: DictConfig, workers: int, workdir: Path
) -> dict[str, Any]:
    """Image batches ready for a model: WatChMaL's dict batches vs recoml's representation output."""
    batch_size = int(p.batch_size[files.detector.name])
    engine = watchmal_engine(wm, files, batch_size, workers, workdir)
    wm_loader = engine.data_loaders["train"]
    module, datamodule = recoml_module(files, batch_size, workers, workdir)
    rm_loader = datamodule.train_dataloader()

    def wm_step(data: dict[str, torch.Tensor]) -> int:
        return len(data["data"])

    def rm_step(batch: Any) -> int:
        with torch.no_grad():
            return len(module.inputs(batch))

    sides = {
        "watchmal": Side(endless(wm_loader), wm_step, wm_loader, [], []),
        "recoml": Side(endless(rm_loader), rm_step, rm_loader, [], []),
    }
    entry = interleaved(sides, int(p.repeats), int(p.n_batches[files.detector.name]), 2 * workers + 1)
    entry |= {"batch_size": batch_size, "workers": workers}
    return entry


def train_case(
    wm: dict[str, ModuleType], files: PeerFiles, p: DictConfig, workdir: Path, device: str
) -> dict[str, Any]:
    """One optimizer step per batch (``bench.peer.train.workers``, 0 by default): WatChMaL's engine vs
    recoml's RecoModule, ResNet-18 at width 64 with circular padding on both sides, on ``device``."""
    batch_size, width, workers = int(p.train.batch_size), int(p.train.width), int(p.train.workers)
    torch.manual_seed(0)
    engine = watchmal_engine(wm, files, batch_size, workers, workdir, width=width, device=device)
    engine.model.train()
    module, datamodule = recoml_module(files, batch_size, workers, workdir, width=width, device=device)
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4)

    def wm_step(data: dict[str, torch.Tensor]) -> int:
        # The body of WatChMaL's ReconstructionEngine.train loop for one batch.
        engine.process_data(data)
        engine.process_target(data)
        _, metrics = engine.step(True, True)
        {k: v.item() for k, v in metrics.items()}
        engine.backward()
        return len(data["data"])

    def rm_step(batch: Any) -> int:
        batch = batch.to(device, non_blocking=True)
        loss = module.task.loss(module(batch), batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss.item()
        return batch.n_events

    wm_loader, rm_loader = engine.data_loaders["train"], datamodule.train_dataloader()
    sides = {
        "watchmal": Side(endless(wm_loader), wm_step, wm_loader, [], []),
        "recoml": Side(endless(rm_loader), rm_step, rm_loader, [], []),
    }
    entry = interleaved(sides, int(p.repeats), int(p.train.n_steps), 2 * workers + 1)
    entry |= {"batch_size": batch_size, "workers": workers, "width": width, "device": device}
    return entry


def bench_peer(cfg: DictConfig, workdir: Path) -> list[dict[str, Any]]:
    """Run the peer cases, write ``peer.json`` in the run directory; rows for the bench table."""
    p = cfg.bench.peer
    wm = import_watchmal(p.watchmal)
    if wm is None:
        return []
    data_dir = Path(p.data_dir) if p.get("data_dir") else workdir / "peer_data"
    files = {
        name: write_peer_files(
            instantiate(compose(config_name="train", overrides=[f"detector={name}"]).detector),
            data_dir,
            int(p.n_events[name]),
            int(p.hits_per_event[name]),
        )
        for name in ("wcte", "hk")
    }
    results: dict[str, Any] = {}
    for case in p.cases:
        if case not in CASES:
            raise ConfigError(f"bench.peer.cases: unknown case '{case}'; known: {list(CASES)}")
        detector, kind, rest = case.split("_", 2)
        if kind == "batches":
            results[case] = batches_case(wm, files[detector], p, int(rest.rstrip("w")), workdir)
        else:
            results[case] = train_case(wm, files[detector], p, workdir, str(cfg.device))
        r = results[case]
        log.info(
            "peer %s: WatChMaL %.0f ev/CPU-s %.0f ev/s, recoml %.0f ev/CPU-s %.0f ev/s, ratio %.2fx / %.2fx",
            case,
            *(r["watchmal"][k] for k in RATES),
            *(r["recoml"][k] for k in RATES),
            *(r["ratio"][k] for k in RATES),
        )
    add_worker_scaling(results)
    for case, r in results.items():
        if "vs_0w" in r:
            log.info(
                "peer %s vs one process (events/s): WatChMaL %.2fx, recoml %.2fx",
                case,
                r["vs_0w"]["watchmal"],
                r["vs_0w"]["recoml"],
            )
    meta = {
        "watchmal": str(Path(p.watchmal).resolve()),
        "files": {
            k: {"path": str(f.h5), "events": int(p.n_events[k]), "hits_per_event": int(p.hits_per_event[k])}
            for k, f in files.items()
        },
        "torch_threads": torch.get_num_threads(),
        "load_average": list(psutil.getloadavg()),
    }
    write_json(Path(cfg.paths.output_dir) / "peer.json", {**results, "meta": meta})
    return [
        {
            "suite": "peer",
            "case": f"{case} ({side})",
            "events_per_s": r[side]["events_per_s"],
            "events_per_cpu_s": r[side]["events_per_cpu_s"],
            "device": "cpu",
        }
        for case, r in results.items()
        for side in ("watchmal", "recoml")
    ]


def add_worker_scaling(results: dict[str, Any]) -> None:
    """``vs_0w`` of each ``<det>_batches_<n>w`` case whose 0-worker case ran too: per side, events/s with
    the workers over events/s in one process."""
    for case, r in results.items():
        detector, kind, rest = case.split("_", 2)
        alone = results.get(f"{detector}_{kind}_0w")
        if kind == "batches" and rest != "0w" and alone is not None:
            r["vs_0w"] = {
                side: r[side]["events_per_s"] / alone[side]["events_per_s"] for side in ("watchmal", "recoml")
            }


def peer_table(results: dict[str, Any], machine: str) -> Table:
    """The peer cases side by side: both rates of each side, their ratios, and for worker cases each
    side's events/s over its 0-worker events/s."""
    table = Table(title=f"recoml vs WatChMaL, same files ({machine})")
    table.add_column("case", no_wrap=True)
    for col in ("WatChMaL ev/CPU-s", "recoml ev/CPU-s", "ratio", "WatChMaL ev/s", "recoml ev/s", "ratio"):
        table.add_column(col, justify="right")
    table.add_column("vs 0w ev/s (WatChMaL / recoml)", justify="right")
    for case in CASES:
        if case in results:
            r = results[case]
            cells = []
            for rate in RATES:
                cells += [
                    f"{r['watchmal'][rate]:,.0f}",
                    f"{r['recoml'][rate]:,.0f}",
                    f"{r['ratio'][rate]:.2f}x",
                ]
            scaling = r.get("vs_0w")
            cells.append(f"{scaling['watchmal']:.2f}x / {scaling['recoml']:.2f}x" if scaling else "")
            table.add_row(case, *cells)
    return table
