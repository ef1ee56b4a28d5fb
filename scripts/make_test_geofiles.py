"""Make tests/data/geometry/sk_od_section_geofile.txt from the real Super-K WCSim geofile.

A real-format WCSim geofile as Hyper-K's are written: the inner tubes numbered 1..N, then an
outer-detector section numbered again from 1, and the header's PMT size in mm (254.00). The tube rows
are the Super-K file's own lines (every 20th inner and every 20th outer tube), with only the id column
renumbered; the 24 broken "extra tower" tubes (cylLoc contradicting the ID/OD alternation) are left out.

    python scripts/make_test_geofiles.py tests/data/geometry/sk_wcsim_geofile.txt tests/data/geometry/
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(source: str, out_dir: str, step: int = 20) -> Path:
    lines = Path(source).read_text().splitlines()
    radius, height, _, _ = lines[0].split()
    inner, outer = [], []
    for line in lines[2:]:
        tok = line.split()
        tube, loc = int(tok[0]), int(tok[7])
        if tube % 2 == 1 and loc < 3:
            inner.append(tok[1:])
        elif tube % 2 == 0 and loc == 3:
            outer.append(tok[1:])
    inner, outer = inner[::step], outer[::step]
    rows = [f"{i + 1:6d} " + " ".join(t) for i, t in enumerate(inner)]
    rows += [f"{i + 1:6d} " + " ".join(t) for i, t in enumerate(outer)]
    head = [f" {radius} {height} {len(rows):9d} {254.0:7.2f}", lines[1]]
    target = Path(out_dir) / "sk_od_section_geofile.txt"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(head + rows) + "\n")
    return target


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
