"""Stream simulated events of any toy generator into an event store in blocks (bounded memory) and write
the split file."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from recoml.data.datamodule import default_split_path
from recoml.data.identity import detector_fingerprint, identity_attrs, source_hash
from recoml.data.splits import make_splits, save_splits, splits_meta
from recoml.data.store import StoreWriter

log = logging.getLogger(__name__)


def toy_attrs(detector: Any, settings: dict[str, Any], config: Mapping[str, Any] | None) -> dict[str, Any]:
    """A toy store's attributes: its identity (detector fingerprint, vertex time origin, kinetic
    energies, and an event source hashed from ``settings`` and the detector: everything that decides the
    events, not their count), the settings themselves and the run's config."""
    fingerprint = detector_fingerprint(detector)
    source = source_hash({**settings, "detector": fingerprint.as_attr() if fingerprint else detector.name})
    ident = identity_attrs(detector, time_origin="vertex", energy_kind="kinetic", event_source=source)
    return {**ident, **settings, "config": dict(config or {})}


def write_simulation(
    output: Path,
    simulate_block: Callable[[int, int], dict[str, Any]],
    *,
    n_events: int,
    block_size: int,
    attrs: dict[str, Any],
    name: str,
    split_path: str | Path | None,
    fractions: Sequence[float],
    split_seed: int,
    overwrite: bool,
    object_types: Sequence[str] = ("hits",),
) -> tuple[Path, Path]:
    """Append ``simulate_block(first_event, count)`` block by block to a store written under a temporary
    name (so memory stays bounded and a crash leaves nothing), then write the split file beside it.
    Every toy generator (water Cherenkov, tracker) goes through here."""
    from tqdm.auto import tqdm

    with (
        StoreWriter(output, attrs=attrs, overwrite=overwrite, object_types=object_types) as writer,
        tqdm(total=n_events, unit="ev", desc=f"simulate {name}", disable=None) as bar,
    ):
        for start in range(0, n_events, block_size):
            count = min(block_size, n_events - start)
            writer.append(simulate_block(start, count))
            bar.update(count)
    split_path = Path(split_path) if split_path else default_split_path(output)
    splits = make_splits(n_events, fractions=tuple(fractions), seed=split_seed)
    save_splits(split_path, splits, meta=splits_meta(n_events, tuple(fractions), split_seed))
    log.info("simulated %d %s events into %s (splits %s)", n_events, name, output, split_path)
    return output, split_path
