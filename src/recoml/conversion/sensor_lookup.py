"""Map the identifiers a file gives its hits (a WCSim tube id; an mPMT and channel; a KM3NeT dom_id and
channel_id) to recoml's sensor index by lookup in the detector's own identifier table.

A mapping declares which of the detector's identifiers (``detector.sensor_id_names``) each hit
expression gives, e.g. ``sensor_lookup: {keys: {tube: tube}}`` or ``{keys: {dom_id: dom_id, channel_id:
channel_id}}``; the lookup replaces hand-written index arithmetic and refuses identifiers the geometry does
not have, with their count and an example.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from recoml.errors import ConfigError, GeometryError

__all__ = ["SensorLookup"]


class SensorLookup:
    """Identifier tuples -> sensor index (int32) for one detector; picklable, vectorized."""

    def __init__(self, ids: np.ndarray, names: Sequence[str], use: Sequence[str], detector_name: str) -> None:
        ids = np.asarray(ids, dtype=np.int64)
        missing = [n for n in use if n not in names]
        if missing or not use:
            raise ConfigError(
                f"sensor_lookup: detector '{detector_name}' identifies its sensors by {list(names)}; "
                f"the mapping's keys {list(use)} must be some of those"
            )
        self.names = tuple(use)
        self.detector_name = detector_name
        table = ids[:, [list(names).index(n) for n in use]]
        self.values = [np.unique(table[:, j]) for j in range(table.shape[1])]
        codes = self._codes([table[:, j] for j in range(table.shape[1])])
        assert codes is not None
        order = np.argsort(codes, kind="stable")
        self.sorted_codes, self.index = codes[order], order.astype(np.int32)
        dup = np.flatnonzero(np.diff(self.sorted_codes) == 0)
        if len(dup):
            raise GeometryError(
                f"detector '{detector_name}': identifiers {list(use)} do not single out a sensor "
                f"(e.g. sensors {int(self.index[dup[0]])} and {int(self.index[dup[0] + 1])} share them)"
            )

    @classmethod
    def from_detector(cls, detector: Any, use: Sequence[str]) -> SensorLookup:
        names = tuple(getattr(detector, "sensor_id_names", ()) or ())
        ids = getattr(detector, "sensor_ids", None)
        if ids is None or not names:
            raise ConfigError(f"sensor_lookup: detector '{detector.name}' has no sensor identifiers")
        return cls(ids, names, use, detector.name)

    def _codes(self, columns: Sequence[np.ndarray]) -> np.ndarray | None:
        """One int64 code per row (mixed radix over each column's known values); None if any is unknown."""
        code = np.zeros(len(columns[0]), dtype=np.int64)
        for values, col in zip(self.values, columns):
            pos = np.clip(np.searchsorted(values, col), 0, len(values) - 1)
            if not np.array_equal(values[pos], col):
                return None
            code = code * len(values) + pos
        return code

    def lookup(self, keys: Mapping[str, np.ndarray], where: str) -> np.ndarray:
        """Sensor index of every hit; GeometryError naming the first unknown identifier and the count."""
        columns = [np.asarray(keys[n]).astype(np.int64).reshape(-1) for n in self.names]
        if not len(columns[0]):
            return np.zeros(0, dtype=np.int32)
        code = self._codes(columns)
        if code is not None:
            pos = np.clip(np.searchsorted(self.sorted_codes, code), 0, len(self.sorted_codes) - 1)
            known = self.sorted_codes[pos] == code
            if known.all():
                return self.index[pos]
        else:
            known = np.ones(len(columns[0]), dtype=bool)
            for values, col in zip(self.values, columns):
                known &= values[np.clip(np.searchsorted(values, col), 0, len(values) - 1)] == col
        first = int(np.flatnonzero(~known)[0])
        example = ", ".join(f"{n}={int(c[first])}" for n, c in zip(self.names, columns))
        raise GeometryError(
            f"{where}: {int((~known).sum())} of {len(known)} hits carry identifiers detector "
            f"'{self.detector_name}' does not have (first: {example}); "
            "the file was made with another geometry "
            "(choose the detector it was made with) or the mapping's sensor_lookup keys are wrong"
        )
