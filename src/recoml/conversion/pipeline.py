"""Conversion driver: plan chunks of entries, read them (in worker processes if asked), stream into a store.

Memory stays bounded by a few chunks whatever the input size: chunks are read by entry range, converted,
appended to a :class:`~recoml.data.store.StoreWriter` (temporary file, renamed when complete) and dropped;
at most ``2 * n_workers`` chunks are in flight. Chunks are appended in input order, so the output does
not depend on ``n_workers``. Inputs are hashed (sha256) in a background thread while they are converted.
"""

from __future__ import annotations

import glob
import logging
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from recoml.conversion.assemble import NAN_POLICIES, ChunkStats, build_chunk
from recoml.conversion.mapping import RootMapping
from recoml.conversion.pmt_match import PmtMatcher
from recoml.conversion.root_reader import check_branches, event_boundary, open_tree, read_branches
from recoml.conversion.sensor_lookup import SensorLookup
from recoml.conversion.whole_files import convert_whole_files, object_reader
from recoml.data.identity import FINGERPRINT_ATTR, detector_fingerprint
from recoml.data.store import StoreWriter
from recoml.errors import ConfigError, DataError
from recoml.io.atomic import remove_stale_temporaries
from recoml.io.provenance import file_sha256

__all__ = [
    "convert_root",
    "ordered_map",
    "progress_disabled",
    "reset_worker_state",
    "expand_inputs",
]

log = logging.getLogger(__name__)


# ------------------------------------------------------------------------------------------ utilities


def expand_inputs(spec: str | os.PathLike | Sequence[str | os.PathLike], suffix: str = ".root") -> list[Path]:
    """Input files from a glob, a file, a directory (its ``*suffix`` files) or a list of those; sorted."""
    items = [spec] if isinstance(spec, str | os.PathLike) else list(spec)
    if not items:
        raise ConfigError("input is empty; give a file, a glob such as 'data/*.root' or a directory")
    out: list[Path] = []
    for item in items:
        text = os.fspath(item)
        path = Path(text).expanduser()
        if path.is_dir():
            found = sorted(path.glob(f"*{suffix}"))
            if not found:
                raise DataError(f"{path}: directory holds no '*{suffix}' file")
            out.extend(found)
        elif glob.has_magic(text):
            found = sorted(Path(p) for p in glob.glob(os.path.expanduser(text)))
            if not found:
                raise DataError(f"input '{text}' matches no file")
            out.extend(found)
        else:
            if not path.exists():
                raise DataError(f"{path}: input file not found")
            out.append(path)
    return list(dict.fromkeys(out))


def ordered_map(
    fn: Callable[[Any], Any],
    tasks: Iterable[Any],
    n_workers: int,
    initializer: Callable[..., None],
    initargs: tuple,
) -> Iterator[Any]:
    """``map(fn, tasks)`` in order: in this process, or a spawned pool with ``2 * n_workers`` in flight."""
    if n_workers <= 1:
        initializer(*initargs)
        for task in tasks:
            yield fn(task)
        return
    ctx = multiprocessing.get_context("spawn")  # no fork of a process that runs a hashing thread
    pool = ProcessPoolExecutor(n_workers, mp_context=ctx, initializer=initializer, initargs=initargs)
    try:
        it = iter(tasks)
        pending: deque[Future] = deque(pool.submit(fn, t) for t in islice(it, 2 * n_workers))
        while pending:
            result = pending.popleft().result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append(pool.submit(fn, nxt))
            yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


class _Hasher:
    """sha256 of the inputs in a background thread (or not at all)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="sha256") if enabled else None
        self._futures: dict[Path, Future] = {}

    def add(self, path: Path) -> None:
        if self._pool is not None and path not in self._futures:
            self._futures[path] = self._pool.submit(file_sha256, path)

    def result(self, path: Path) -> str | None:
        return self._futures[path].result() if path in self._futures else None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


# ------------------------------------------------------------------------------------------ ROOT


@dataclass(frozen=True)
class _RootJob:
    """What every worker needs, sent once per process."""

    mapping: RootMapping
    nan_policy: str
    matcher: PmtMatcher | None
    lookup: SensorLookup | None = None


@dataclass(frozen=True)
class _RootTask:
    path: str
    start: int
    stop: int
    n_entries: int  # of the whole tree


_JOB: Any = None
_TREES: dict[str, Any] = {}


def reset_worker_state() -> None:
    """Drop the job and open files that an in-process (n_workers=1) run left in this module."""
    global _JOB
    _JOB = None
    _TREES.clear()


def _init_root(job: _RootJob) -> None:
    global _JOB
    _JOB = job
    _TREES.clear()


def _tree(path: str) -> Any:
    if path not in _TREES:
        _TREES.clear()  # one open file per process at a time
        _TREES[path] = open_tree(path, _JOB.mapping.tree)
    return _TREES[path]


def _run_root_task(task: _RootTask) -> tuple[dict[str, np.ndarray] | None, ChunkStats, int]:
    job: _RootJob = _JOB
    mapping = job.mapping
    tree = _tree(task.path)
    start, stop = task.start, task.stop
    if mapping.layout == "long":
        assert mapping.event_column is not None
        start = event_boundary(tree, mapping.event_column, start, task.n_entries)
        stop = event_boundary(tree, mapping.event_column, stop, task.n_entries)
    if stop <= start:
        return None, ChunkStats(), task.stop - task.start
    values = read_branches(tree, mapping.branches, start, stop)
    chunk, stats = build_chunk(
        mapping, values, stop - start, start, task.path, job.nan_policy, job.matcher, job.lookup
    )
    return chunk, stats, task.stop - task.start


def _plan(mapping: RootMapping, files: list[Path], max_entries: int | None) -> list[dict]:
    """Open every input, check tree and branches, and fix the entry range converted from each."""
    plans = []
    left = max_entries
    for path in files:
        tree = open_tree(path, mapping.tree)
        check_branches(tree, mapping.branches, path)
        n = int(tree.num_entries)
        stop = n if left is None else min(n, left)
        if left is not None:
            left -= stop
        plans.append({"path": path, "n_entries": n, "entry_start": 0, "entry_stop": stop})
    return plans


def conversion_identity(mapping: RootMapping, detector: Any) -> dict[str, Any]:
    """The store's identity attributes: the conventions the mapping declares and, when a detector is
    given, its name and fingerprint (so training and prediction can check the pairing)."""
    out: dict[str, Any] = {}
    if mapping.time_origin:
        out["time_origin"] = mapping.time_origin
    if mapping.energy_kind:
        out["energy_kind"] = mapping.energy_kind
    if detector is not None:
        fp = detector_fingerprint(detector)
        out["detector"] = detector.name
        if fp is not None:
            out[FINGERPRINT_ATTR], out["n_pmts"] = fp.as_attr(), fp.n_sensors
    return out


def convert_root(
    inputs: str | os.PathLike | Sequence[str | os.PathLike],
    output: str | os.PathLike,
    mapping: RootMapping,
    *,
    detector: Any = None,
    overwrite: bool = False,
    n_workers: int = 1,
    chunk_size: int = 10_000,
    nan_policy: str = "raise",
    max_entries: int | None = None,
    hash_inputs: bool = True,
    progress: bool | None = None,
) -> Path:
    """Convert ROOT files into one event store at ``output``; return its path.

    ``detector`` (a WCDetector) is needed when the mapping matches hit positions to PMTs. ``chunk_size``
    entries are read at a time (rows for a long tree); ``max_entries`` caps the entries read over all
    files. ``progress`` None shows a bar only on a terminal.
    """
    if nan_policy not in NAN_POLICIES:
        raise ConfigError(f"nan_policy '{nan_policy}' is not one of {list(NAN_POLICIES)}")
    if chunk_size < 1 or n_workers < 1:
        raise ConfigError(f"chunk_size ({chunk_size}) and n_workers ({n_workers}) must be at least 1")
    output = Path(output)
    if output.exists() and not overwrite:
        raise DataError(f"{output} already exists; set overwrite=true to replace it")
    files = expand_inputs(inputs, ".h5" if mapping.format == "hdf5" else ".root")
    matcher = None
    if mapping.pmt_match is not None:
        if detector is None:
            raise ConfigError(
                f"mapping '{mapping.name}' matches hit positions to PMTs (pmt_match) and needs a detector: "
                "add detector=<name> or detector=from_file detector.path=<geofile>"
            )
        matcher = PmtMatcher.from_detector(detector, mapping.pmt_match.tolerance)
    lookup = None
    if mapping.sensor_lookup is not None:
        if detector is None:
            raise ConfigError(
                f"mapping '{mapping.name}' looks hit identifiers up in a geometry (sensor_lookup) and "
                "needs a "
                "detector: add detector=from_file detector.path=<geometry file>"
            )
        lookup = SensorLookup.from_detector(detector, list(mapping.sensor_lookup.keys))
    if mapping.format in ("hdf5", "objects"):  # inputs read whole, one file at a time
        from recoml.conversion.hdf5_table import hdf5_reader

        whole = {"converter": "recoml.convert", "mapping_name": mapping.name, "mapping": mapping.raw}
        return convert_whole_files(
            files,
            output,
            mapping,
            hdf5_reader(mapping) if mapping.format == "hdf5" else object_reader(mapping),
            attrs=whole | conversion_identity(mapping, detector),
            matcher=matcher,
            lookup=lookup,
            overwrite=overwrite,
            nan_policy=nan_policy,
            hash_inputs=hash_inputs,
        )
    plans = _plan(mapping, files, max_entries)
    tasks = [
        _RootTask(str(p["path"]), a, min(a + chunk_size, p["entry_stop"]), p["n_entries"])
        for p in plans
        for a in range(p["entry_start"], p["entry_stop"], chunk_size)
    ]
    remove_stale_temporaries(output)
    hasher = _Hasher(hash_inputs)
    total = ChunkStats()
    attrs: dict[str, Any] = {
        "converter": "recoml.convert",
        "mapping_name": mapping.name,
        "mapping": mapping.raw,
        "nan_policy": nan_policy,
        "chunk_size": chunk_size,
    }
    if matcher is not None:
        attrs["pmt_match"] = {"n_pmts": len(matcher.positions), "tolerance_cm": matcher.tolerance}
    attrs |= conversion_identity(mapping, detector)
    n_total = sum(p["entry_stop"] - p["entry_start"] for p in plans)
    try:
        with StoreWriter(
            output, attrs=attrs, overwrite=overwrite, object_types=list(mapping.objects)
        ) as writer:
            for p in plans:
                hasher.add(p["path"])
            bar = tqdm(
                total=n_total,
                unit="entries",
                desc=f"convert {output.name}",
                disable=progress_disabled(progress),
            )
            done_files: set[str] = set()
            remaining = {str(p["path"]): p["entry_stop"] - p["entry_start"] for p in plans}
            with bar:
                job = _RootJob(mapping, nan_policy, matcher, lookup)
                for (chunk, stats, n_read), task in zip(
                    ordered_map(_run_root_task, tasks, n_workers, _init_root, (job,)), tasks
                ):
                    if chunk is not None and stats.n_events:
                        writer.append(chunk)
                    total.add(stats)
                    remaining[task.path] -= n_read
                    if remaining[task.path] <= 0:
                        done_files.add(task.path)
                    bar.update(n_read)
                    bar.set_postfix(files=f"{len(done_files)}/{len(plans)}", events=writer.n_events)
            writer.attrs["source_files"] = [
                {
                    "path": str(p["path"]),
                    "sha256": hasher.result(p["path"]),
                    "size_bytes": p["path"].stat().st_size,
                    "tree": mapping.tree,
                    "entry_start": p["entry_start"],
                    "entry_stop": p["entry_stop"],
                }
                for p in plans
            ]
            writer.attrs["conversion_stats"] = asdict(total)
    finally:
        hasher.close()
        reset_worker_state()
    _log_stats(output, total)
    return output


def _log_stats(output: Path, total: ChunkStats) -> None:
    if total.nan_counts:
        log.warning(
            "%s: dropped %d event(s) and %s object(s) holding NaN values %s",
            output,
            total.dropped_events,
            total.dropped_objects,
            total.nan_counts,
        )
    log.info("%s: %d events from %d entries", output, total.n_events, total.n_entries)


def progress_disabled(progress: bool | None) -> bool | None:
    return None if progress is None else not progress
