"""Write a recoml toy store as a flat WCSim-style ROOT file, with WCSim's conventions: hit times carry a
trigger offset and ``energy`` is the primary's total energy. A stand-in for a user's flattened WCSim
output in docs/real-data.md (tree ``events``: ``tube`` (1-based), ``charge``, ``time`` per hit; ``energy``,
``vtx_x/y/z``, ``dir_x/y/z``, ``pid`` per event: what ``convert=flat_wcsim_tubes`` reads).

    python scripts/toy_to_flat_wcsim.py <toy store .h5> <output .root> [trigger offset ns, default 950]
"""

from __future__ import annotations

import sys
from pathlib import Path

import awkward as ak
import numpy as np
import uproot

from recoml.data.store import open_store
from recoml.tasks.regression import MASS_BY_LABEL

PDG_BY_LABEL = {0: 22, 1: 11, 2: 13, 3: 111}


def main(store_path: str, output: str, trigger_offset: float = 950.0) -> Path:
    store = open_store(store_path)
    flat, offsets, events = store.read(
        np.arange(len(store)), None, ["labels", "energies", "positions", "directions"]
    )
    counts = np.diff(offsets)
    labels = events["labels"].astype(int)
    mass = np.array([MASS_BY_LABEL[int(label)] for label in labels])
    vertex, direction = events["positions"].reshape(-1, 3), events["directions"].reshape(-1, 3)
    branches = {
        "tube": ak.unflatten(flat["hit_pmt"].astype(np.int32) + 1, counts),
        "charge": ak.unflatten(flat["hit_charge"].astype(np.float32), counts),
        "time": ak.unflatten((flat["hit_time"] + trigger_offset).astype(np.float32), counts),
        "energy": (events["energies"].reshape(-1) + mass).astype(np.float32),  # total energy
        **{f"vtx_{a}": vertex[:, i].astype(np.float32) for i, a in enumerate("xyz")},
        **{f"dir_{a}": direction[:, i].astype(np.float32) for i, a in enumerate("xyz")},
        "pid": np.array([PDG_BY_LABEL[int(label)] for label in labels], dtype=np.int32),
    }
    with uproot.recreate(output) as f:
        f.mktree(
            "events", {k: ak.type(v) if isinstance(v, ak.Array) else v.dtype for k, v in branches.items()}
        )
        f["events"].extend(branches)
    return Path(output)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *(float(a) for a in sys.argv[3:]))
