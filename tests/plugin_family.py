"""A detector family and a task defined only here, outside the package: proof that a new family is its own
module + config overrides, and a new task is its task class + its evaluator, with no edit to recoml.

The family: a flat square grid of sensors facing +z (a toy "sensor panel"). Each event is a point source
above the panel; a sensor sees charge ~ exp(-d / spread) of its distance d to the source's foot point,
with ``spread`` narrow (class 0) or wide (class 1). The task: tell narrow from wide, a new task kind
(``spread``) with its own evaluator (accuracy and the mean wide-class probability per true class).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from recoml.contracts import Detector
from recoml.data.simulated import write_simulation
from recoml.evaluation import Evaluator, SectionResult, register
from recoml.prediction import SectionData
from recoml.tasks import ClassificationTask

#: Charge fall-off lengths of the two classes (in units of the grid spacing).
SPREADS = (0.6, 2.0)


class PanelDetector(Detector):
    """``n_side`` x ``n_side`` sensors ``spacing`` apart in the z = 0 plane, facing +z."""

    family: ClassVar[str] = "sensor_panel"
    simulator_target: ClassVar[str] = "tests.plugin_family.simulate_panel"

    def __init__(self, name: str = "panel", n_side: int = 12, spacing: float = 1.0) -> None:
        self.name, self.n_side, self.spacing = name, int(n_side), float(spacing)
        ij = np.stack(np.meshgrid(np.arange(self.n_side), np.arange(self.n_side), indexing="ij"), -1)
        xy = (ij.reshape(-1, 2) - (self.n_side - 1) / 2) * self.spacing
        self._positions = np.concatenate([xy, np.zeros((len(xy), 1))], 1).astype(np.float32)

    @property
    def n_sensors(self) -> int:
        return len(self._positions)

    @property
    def sensor_positions(self) -> np.ndarray:
        return self._positions

    @property
    def sensor_directions(self) -> np.ndarray:
        return np.tile(np.array([0.0, 0.0, 1.0], np.float32), (self.n_sensors, 1))

    def feature_scales(self) -> dict[str, tuple[float, float]]:
        half = self.n_side * self.spacing / 2
        return {"x": (0.0, half), "y": (0.0, half), "z": (0.0, 1.0)} | {f"dir_{a}": (0.0, 1.0) for a in "xyz"}


def simulate_panel(
    detector: PanelDetector,
    output: str | Path,
    *,
    n_events: int,
    seed: int = 0,
    split_path: str | Path | None = None,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    split_seed: int = 0,
    overwrite: bool = False,
    config: Mapping[str, Any] | None = None,
    threshold: float = 0.05,
) -> tuple[Path, Path]:
    """The family's Simulator: point sources with a narrow or wide charge footprint."""

    def block(start: int, count: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([seed, start])
        labels = rng.integers(0, 2, count).astype(np.int32)
        half = detector.n_side * detector.spacing / 4
        foot = rng.uniform(-half, half, (count, 2))
        pos = detector.sensor_positions[:, :2]
        d = np.linalg.norm(pos[None] - foot[:, None], axis=2)  # (events, sensors)
        charge = np.exp(-d / (np.array(SPREADS)[labels][:, None] * detector.spacing))
        charge *= rng.uniform(0.8, 1.2, charge.shape)
        hit = charge > threshold
        counts = hit.sum(1)
        ev, sensor = np.nonzero(hit)
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        vertex = np.concatenate([foot, np.ones((count, 1))], 1).astype(np.float32)
        return {
            "event_hits_index": offsets,
            "hit_pmt": sensor.astype(np.int32),
            "hit_charge": charge[ev, sensor].astype(np.float32),
            "hit_time": d[ev, sensor].astype(np.float32),
            "labels": labels,
            "positions": vertex[:, None, :],
            "event_ids": np.arange(start, start + count, dtype=np.int32),
        }

    return write_simulation(
        Path(output),
        block,
        n_events=n_events,
        block_size=1000,
        attrs={"detector": detector.name, "family": detector.family, "config": dict(config or {})},
        name=detector.name,
        split_path=split_path,
        fractions=fractions,
        split_seed=split_seed,
        overwrite=overwrite,
    )


class SpreadTask(ClassificationTask):
    """Narrow vs wide footprints: a classification with a task kind and an evaluator of its own."""

    kind = "spread"
    evaluator = "tests.plugin_family"

    def __init__(self, name: str = "spread", **kwargs: Any) -> None:
        super().__init__(name=name, label_values=(0, 1), class_names=("narrow", "wide"), **kwargs)


@register("spread")
class SpreadEvaluator(Evaluator):
    """Accuracy at p(wide) > 0.5 and the mean p(wide) of each true class."""

    required = ("pred_probabilities", "true_labels")
    main_metric = "accuracy"

    def evaluate(self, run: SectionData) -> SectionResult:
        p_wide = np.asarray(run.get("pred_probabilities"))[:, 1]
        truth = np.asarray(run.get("true_labels")).reshape(-1)
        scalars = {
            "accuracy": float(((p_wide > 0.5) == (truth == 1)).mean()),
            "mean_p_wide_narrow": float(p_wide[truth == 0].mean()),
            "mean_p_wide_wide": float(p_wide[truth == 1].mean()),
            "n_events": float(len(truth)),
        }
        return SectionResult(scalars=scalars)
