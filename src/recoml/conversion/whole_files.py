"""Inputs read whole, one file at a time, into an event store through a mapping: flat HDF5 hit tables
(:mod:`recoml.conversion.hdf5_table`) and files of class objects that a family's reader decodes
(``format: objects``, e.g. raw WCSim output). Expressions, sensor lookup and PMT matching are the ROOT
conversion's (:func:`recoml.conversion.assemble.build_chunk`)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hydra.utils import get_method

from recoml.conversion.assemble import NAN_POLICIES, ChunkStats, build_chunk
from recoml.conversion.mapping import RootMapping
from recoml.conversion.pmt_match import PmtMatcher
from recoml.conversion.sensor_lookup import SensorLookup
from recoml.data.store import StoreWriter
from recoml.errors import ConfigError, DataError
from recoml.io.provenance import file_sha256

log = logging.getLogger(__name__)

#: Reads one input: ``(values by mapping name, entries (rows of a long table or events), source record)``.
FileReader = Callable[[Path], tuple[dict[str, Any], int, dict[str, Any]]]


def convert_whole_files(
    inputs: Sequence[Path],
    output: str | os.PathLike,
    mapping: RootMapping,
    read: FileReader,
    *,
    attrs: dict[str, Any],
    matcher: PmtMatcher | None = None,
    lookup: SensorLookup | None = None,
    overwrite: bool = False,
    nan_policy: str = "raise",
    hash_inputs: bool = True,
) -> Path:
    """Convert every input (in order) into one store; ``source_files`` records each input's ``read``
    record, size and sha256."""
    if nan_policy not in NAN_POLICIES:
        raise ConfigError(f"nan_policy '{nan_policy}' is not one of {list(NAN_POLICIES)}")
    total = ChunkStats()
    sources = []
    with StoreWriter(output, attrs=attrs, overwrite=overwrite, object_types=list(mapping.objects)) as writer:
        for path in inputs:
            values, n_entries, record = read(path)
            if n_entries:
                chunk, stats = build_chunk(
                    mapping, values, n_entries, 0, str(path), nan_policy, matcher, lookup
                )
                if stats.n_events:
                    writer.append(chunk)
                total.add(stats)
            sources.append(
                {"path": str(path), "sha256": file_sha256(path) if hash_inputs else None}
                | record
                | {"size_bytes": path.stat().st_size}
            )
        writer.attrs["source_files"] = sources
    log.info("converted %d entries into %d events: %s", total.n_entries, total.n_events, output)
    return Path(output)


def object_reader(mapping: RootMapping) -> FileReader:
    """The ``format: objects`` mapping's family reader (``mapping.reader``) as a :data:`FileReader`."""
    assert mapping.reader is not None
    try:
        family_read = get_method(mapping.reader)
    except Exception as err:  # Hydra wraps import errors
        raise ConfigError(
            f"mapping '{mapping.name}': reader {mapping.reader!r} cannot be imported ({err})"
        ) from err

    def read(path: Path) -> tuple[dict[str, Any], int, dict[str, Any]]:
        values, n_events = family_read(path, mapping.tree, mapping.branches)
        missing = [n for n in mapping.branches if n not in values]
        if missing:
            raise DataError(f"{path}: {mapping.reader} gave no {missing}")
        return values, int(n_events), {"tree": mapping.tree, "entries": int(n_events)}

    return read
