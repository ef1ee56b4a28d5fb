"""The TrackML :class:`~recoml.contracts.Converter`: a directory of TrackML CSV events (+ detectors.csv)
into one store with hits and particles, events read in worker processes and appended in order."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from recoml.conversion.mapping import TrackmlMapping
from recoml.conversion.pipeline import ordered_map, progress_disabled, reset_worker_state
from recoml.data.store import StoreWriter
from recoml.data.validate import index_name
from recoml.errors import DataError
from recoml.families.tracking.trackml import (
    event_number,
    find_trackml_file,
    list_trackml_events,
    normalize_event_id,
    read_trackml_detectors,
    read_trackml_event,
)
from recoml.io.atomic import remove_stale_temporaries
from recoml.io.provenance import file_sha256

log = logging.getLogger(__name__)

#: The job of this process (set once per worker by :func:`_init_trackml`).
_JOB: Any = None


@dataclass(frozen=True)
class _TrackmlJob:
    directory: str
    cells: bool
    detectors: Any  # pandas.DataFrame | None
    hash_inputs: bool


def _init_trackml(job: _TrackmlJob) -> None:
    global _JOB
    _JOB = job


def _run_trackml_task(event: str) -> tuple[dict[str, np.ndarray], list[dict[str, Any]]]:
    job: _TrackmlJob = _JOB
    arrays = read_trackml_event(job.directory, event, cells=job.cells, detectors=job.detectors)
    chunk: dict[str, np.ndarray] = {
        "event_ids": np.array([event_number(event)], dtype=np.int32),
        index_name("hits"): np.zeros(1, dtype=np.int64),
        index_name("particles"): np.zeros(1, dtype=np.int64),
        **arrays,
    }
    files = []
    for path in sorted(Path(job.directory).glob(f"{event}-*.csv*")):
        files.append(
            {
                "path": str(path),
                "size_bytes": path.stat().st_size,
                "sha256": file_sha256(path) if job.hash_inputs else None,
            }
        )
    return chunk, files


def _trackml_detectors_path(directory: Path, spec: str | bool | None) -> Path | None:
    if spec is False:
        return None
    if spec not in (None, True):
        return Path(str(spec))
    for where in (directory, directory.parent):
        found = find_trackml_file(where, "detectors", required=False)
        if found is not None:
            return found
    if spec is True:
        raise DataError(f"{directory}: detectors.csv not found here or in the parent directory")
    log.warning("%s: no detectors.csv beside the events; hits get no module geometry", directory)
    return None


def convert_trackml(
    directory: str | os.PathLike,
    output: str | os.PathLike,
    mapping: TrackmlMapping,
    *,
    overwrite: bool = False,
    n_workers: int = 1,
    hash_inputs: bool = True,
    progress: bool | None = None,
) -> Path:
    """Convert a directory of TrackML events (+ detectors.csv) into one store with hits and particles."""
    directory = Path(directory)
    output = Path(output)
    if output.exists() and not overwrite:
        raise DataError(f"{output} already exists; set overwrite=true to replace it")
    events = list_trackml_events(directory)
    if mapping.events is not None:
        wanted = [normalize_event_id(e) for e in mapping.events]
        missing = [e for e in wanted if e not in events]
        if missing:
            raise DataError(f"{directory}: TrackML event(s) {missing} not found; events found: {events[:10]}")
        events = wanted
    if not events:
        raise DataError(f"{directory}: no TrackML event found (no file named event<number>-hits.csv[.gz])")
    det_path = _trackml_detectors_path(directory, mapping.detectors)
    detectors = read_trackml_detectors(det_path) if det_path is not None else None
    remove_stale_temporaries(output)
    attrs: dict[str, Any] = {
        "converter": "recoml.convert",
        "mapping_name": mapping.name,
        "mapping": mapping.raw,
        "units": "mm, GeV",
    }
    if det_path is not None and detectors is not None:
        attrs["detectors_file"] = {
            "path": str(det_path),
            "sha256": file_sha256(det_path) if hash_inputs else None,
            "n_modules": len(detectors),
        }
    sources: list[dict[str, Any]] = []
    job = _TrackmlJob(str(directory), mapping.cells, detectors, hash_inputs)
    try:
        with StoreWriter(
            output, attrs=attrs, overwrite=overwrite, object_types=["hits", "particles"]
        ) as writer:
            _convert_trackml_events(writer, events, job, n_workers, progress, sources)
    finally:
        reset_worker_state()
    log.info("%s: %d TrackML events", output, len(events))
    return output


def _convert_trackml_events(
    writer: StoreWriter,
    events: list[str],
    job: _TrackmlJob,
    n_workers: int,
    progress: bool | None,
    sources: list[dict[str, Any]],
) -> None:
    """Append one chunk per event, in order; record each event's files (and their sha256)."""
    desc = f"convert {writer.path.name}"
    with tqdm(total=len(events), unit="events", desc=desc, disable=progress_disabled(progress)) as bar:
        for chunk, files in ordered_map(_run_trackml_task, events, n_workers, _init_trackml, (job,)):
            writer.append(chunk)
            sources.extend(files)
            bar.update(1)
    writer.attrs["source_files"] = sources
