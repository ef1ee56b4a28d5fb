"""The toy simulation contract: write ``n_events`` of a detector into an event store plus a split file."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, cast

from hydra.utils import get_method

from recoml.contracts.detector import Detector


class Simulator(Protocol):
    """A family's toy generator. ``options`` are the family's own (particles and energies for water
    Cherenkov, particle multiplicity and pT spectrum for trackers); everything else is common."""

    def __call__(
        self,
        detector: Detector,
        output: str | Path,
        *,
        n_events: int,
        seed: int = 0,
        split_path: str | Path | None = None,
        fractions: Sequence[float] = (0.8, 0.1, 0.1),
        split_seed: int = 0,
        overwrite: bool = False,
        config: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> tuple[Path, Path]:
        """Write the store (under a temporary name, renamed when complete) and its split file; return
        both paths."""
        ...


def simulator_of(detector: Detector) -> Simulator:
    """The detector family's simulator, located from its declared ``simulator_target``."""
    return cast(Simulator, get_method(detector.simulator_target))
