"""Group the rows of a long tree (one row per hit, an event-number column) into events.

Rows of one event must be consecutive (how Geant4 and most ntuple writers fill such trees); each run of
equal event numbers is one event, so grouping is one ``diff`` and needs no sort or memory beyond the chunk.
"""

from __future__ import annotations

import numpy as np

from recoml.errors import DataError

__all__ = ["group_rows"]


def group_rows(event_numbers: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Start row and row count of each event in a chunk of rows, in order of appearance.

    DataError (naming the event) when an event number comes back after other events, i.e. its rows are
    not consecutive and it would otherwise become two events.
    """
    ev = np.asarray(event_numbers).reshape(-1)
    if not len(ev):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    starts = np.concatenate([[0], np.flatnonzero(ev[1:] != ev[:-1]) + 1]).astype(np.int64)
    counts = np.diff(np.append(starts, len(ev)))
    numbers = ev[starts]
    uniq, seen = np.unique(numbers, return_counts=True)
    if (seen > 1).any():
        repeated = uniq[seen > 1][0]
        runs = np.flatnonzero(numbers == repeated)
        raise DataError(
            f"{where}: the rows of event {repeated} are not consecutive (they start at rows "
            f"{starts[runs[:3]].tolist()} with other events in between); sort the tree by event first"
        )
    return starts, counts
