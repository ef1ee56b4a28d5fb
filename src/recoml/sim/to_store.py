"""Stream simulated events into an event store in blocks (bounded memory) and write the split file."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from recoml.data.datamodule import default_split_path
from recoml.data.identity import detector_fingerprint, identity_attrs, source_hash
from recoml.data.splits import make_splits, save_splits, splits_meta
from recoml.data.store import StoreWriter
from recoml.detectors.geometry import WCDetector

log = logging.getLogger(__name__)


def simulate_to_store(
    detector: WCDetector,
    output: str | Path,
    *,
    n_events: int,
    particles: Sequence[str] = ("e-", "mu-", "gamma"),
    energy_range: Sequence[float] = (100.0, 1000.0),
    fiducial_margin: float = 50.0,
    seed: int = 0,
    n_workers: int = 1,
    chunk_size: int = 1000,
    split_path: str | Path | None = None,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    split_seed: int = 0,
    overwrite: bool = False,
    physics: dict[str, Any] | None = None,
    config: dict[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Simulate ``n_events`` into ``output`` (written under a temporary name, renamed when complete).

    Events are produced in blocks of whole simulation chunks, so the file is identical whatever
    ``n_workers`` is, and memory stays bounded for large samples.
    """
    from recoml.sim import PhysicsConfig, simulate

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    phys = PhysicsConfig(**(physics or {}))
    settings = {
        "generator": "recoml.sim toy water-Cherenkov",
        "particles": list(particles),
        "energy_range": list(energy_range),
        "fiducial_margin": fiducial_margin,
        "seed": seed,
        "chunk_size": chunk_size,
        "physics": phys.__dict__ if hasattr(phys, "__dict__") else str(phys),
    }
    attrs = toy_attrs(detector, settings, config)

    def block(start: int, count: int) -> dict[str, Any]:
        return simulate(
            detector,
            count,
            particles=tuple(particles),
            energy_range=tuple(energy_range),
            fiducial_margin=fiducial_margin,
            physics=phys,
            seed=seed,
            first_event=start,
            n_workers=n_workers,
            chunk_size=chunk_size,
        )

    return write_simulation(
        output,
        block,
        n_events=n_events,
        block_size=chunk_size * max(1, n_workers) * 4,
        attrs=attrs,
        name=detector.name,
        split_path=split_path,
        fractions=fractions,
        split_seed=split_seed,
        overwrite=overwrite,
    )


def toy_attrs(detector: Any, settings: dict[str, Any], config: dict[str, Any] | None) -> dict[str, Any]:
    """A toy store's attributes: its identity (detector fingerprint, vertex time origin, kinetic
    energies, and an event source hashed from ``settings`` and the detector: everything that decides the
    events, not their count), the settings themselves and the run's config."""
    fingerprint = detector_fingerprint(detector)
    assert fingerprint is not None  # toys simulate detectors with sensors
    source = source_hash({**settings, "detector": fingerprint.as_attr()})
    ident = identity_attrs(detector, time_origin="vertex", energy_kind="kinetic", event_source=source)
    return {**ident, **settings, "config": config or {}}


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
