"""The water-Cherenkov :class:`~recoml.contracts.Simulator`: toy rings streamed into an event store."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from recoml.data.simulated import toy_attrs, write_simulation
from recoml.families.water_cherenkov.detector import WCDetector
from recoml.families.water_cherenkov.simulation import PhysicsConfig, simulate


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
    config: Mapping[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Simulate ``n_events`` into ``output`` (written under a temporary name, renamed when complete).

    Events are produced in blocks of whole simulation chunks, so the file is identical whatever
    ``n_workers`` is, and memory stays bounded for large samples.
    """
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    phys = PhysicsConfig(**(physics or {}))
    settings = {
        "generator": "recoml.families.water_cherenkov toy rings",
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
