"""Read KM3NeT ``.detx`` detector files (versions 1-5, optionally gzipped) into a
:class:`SensorArrayDetector`.

What the files hold (checked against the files of ``km3net-testdata``): optional ``#`` comment lines;
a header ``det_id n_doms`` (v1) or ``det_id vN`` followed by the validity interval, the UTM reference
and ``n_doms`` (v2+); then per optical module (DOM) a line ``dom_id line floor [x y z q0 qx qy qz t0
[status]] n_pmts`` (the bracket from v4, ``status`` from v5) and ``n_pmts`` PMT lines ``pmt_id x y z dx
dy dz t0 [status]`` (``status`` from v3). Positions are in metres (converted to cm here), ``t0`` in ns.
A PMT's ``channel_id`` (what hits carry with the ``dom_id``) is its order inside the DOM block.
"""

from __future__ import annotations

import gzip
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recoml.errors import GeometryError
from recoml.families.sensor_array.detector import SensorArrayDetector

log = logging.getLogger(__name__)

M_TO_CM = 100.0
#: Tokens of a DOM line and of a PMT line per format version.
_DOM_TOKENS = {1: 4, 2: 4, 3: 4, 4: 12, 5: 13}
_PMT_TOKENS = {1: 8, 2: 8, 3: 9, 4: 9, 5: 9}


@dataclass(frozen=True)
class DetxTable:
    """The PMTs of a ``.detx`` file in file order (positions in metres, as stored)."""

    det_id: int
    version: int
    dom_id: np.ndarray  # (P,) int64
    line: np.ndarray  # (P,) int64 (string / detection unit)
    floor: np.ndarray  # (P,) int64
    channel_id: np.ndarray  # (P,) int64, 0..n_pmts-1 inside the DOM
    pmt_id: np.ndarray  # (P,) int64
    pos_m: np.ndarray  # (P, 3) float64
    dir: np.ndarray  # (P, 3) float64
    t0: np.ndarray  # (P,) float64, ns


def _lines(path: Path) -> list[tuple[int, list[str]]]:
    if not path.is_file():
        raise GeometryError(f"{path}: detector file not found")
    opener = gzip.open if path.read_bytes()[:2] == b"\x1f\x8b" else open
    try:
        with opener(path, "rt", encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as err:
        raise GeometryError(f"{path}: cannot read as a text .detx file ({err})") from err
    return [
        (i, line.split())
        for i, line in enumerate(text.splitlines(), 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]


def read_detx(path: str | Path) -> DetxTable:
    """Parse a ``.detx`` file; GeometryError naming the line for anything unexpected."""
    path = Path(path)
    lines = _lines(path)
    if not lines:
        raise GeometryError(f"{path}: the detector file is empty")
    (lineno, head), pos = lines[0], 1
    try:
        det_id = int(head[0])
        if len(head) == 2 and head[1][:1] in "vV":
            version = int(head[1][1:])
            pos += 2  # validity interval, UTM reference
            n_doms = int(lines[pos][1][0])
            pos += 1
        elif len(head) == 2:
            version, n_doms = 1, int(head[1])
        else:
            raise ValueError("expected 'det_id n_doms' or 'det_id vN'")
    except (ValueError, IndexError) as err:
        raise GeometryError(f"{path}: line {lineno} is not a .detx header ({err})") from err
    if version not in _DOM_TOKENS:
        raise GeometryError(f"{path}: .detx version {version} is not one of {sorted(_DOM_TOKENS)}")
    rows: list[list[float]] = []
    dom_info: list[tuple[int, int, int, int]] = []

    def take(n_tokens: int, what: str, short: str) -> tuple[int, list[str]]:
        """The next line, checked to hold ``n_tokens`` columns."""
        if pos >= len(lines):
            raise GeometryError(f"{path}: the file ends inside the {n_doms} DOMs announced ({short})")
        lineno, tok = lines[pos]
        if len(tok) != n_tokens:
            raise GeometryError(
                f"{path}: line {lineno} has {len(tok)} columns, expected a v{version} {what} of {n_tokens}"
            )
        return lineno, tok

    pmt_columns = f"'pmt_id x y z dx dy dz t0{' status' if version >= 3 else ''}'"
    for _ in range(n_doms):
        _, tok = take(_DOM_TOKENS[version], "DOM line", f"after {len(set(d[0] for d in dom_info))} DOMs")
        dom_id, line, floor, n_pmts = int(tok[0]), int(tok[1]), int(tok[2]), int(tok[-1])
        pos += 1
        for channel in range(n_pmts):
            lineno, tok = take(_PMT_TOKENS[version], f"PMT line ({pmt_columns})", f"DOM {dom_id}")
            try:
                rows.append([float(t) for t in tok[:8]])
            except ValueError as err:
                raise GeometryError(f"{path}: line {lineno} is not numeric ({err})") from err
            dom_info.append((dom_id, line, floor, channel))
            pos += 1
    if pos != len(lines):
        raise GeometryError(f"{path}: {len(lines) - pos} lines follow the {n_doms} DOMs the header announces")
    table = np.asarray(rows, dtype=np.float64).reshape(-1, 8)
    info = np.asarray(dom_info, dtype=np.int64).reshape(-1, 4)
    return DetxTable(
        det_id=det_id,
        version=version,
        dom_id=info[:, 0],
        line=info[:, 1],
        floor=info[:, 2],
        channel_id=info[:, 3],
        pmt_id=table[:, 0].astype(np.int64),
        pos_m=table[:, 1:4],
        dir=table[:, 4:7],
        t0=table[:, 7],
    )


def load_detx(path: str | Path, name: str | None = None, pmt_radius: float = 4.0) -> SensorArrayDetector:
    """A KM3NeT detector from its ``.detx`` file: PMT ``k`` is the ``k``-th PMT line of the file,
    identified by ``(dom_id, channel_id)`` (and ``pmt_id``); positions in cm."""
    path = Path(path)
    t = read_detx(path)
    norms = np.linalg.norm(t.dir, axis=1)
    if (norms < 1e-6).any():
        raise GeometryError(f"{path}: PMT {int(t.pmt_id[np.argmax(norms < 1e-6)])} has a zero direction")
    _, module = np.unique(t.dom_id, return_inverse=True)
    ids = np.column_stack([t.dom_id, t.channel_id, t.pmt_id])
    log.info(
        "%s: KM3NeT detector %d (detx v%d): %d PMTs in %d DOMs on %d strings",
        path,
        t.det_id,
        t.version,
        len(ids),
        module.max() + 1 if len(ids) else 0,
        len(np.unique(t.line)),
    )
    return SensorArrayDetector(
        name=name or path.name.split(".")[0],
        sensor_positions=(t.pos_m * M_TO_CM).astype(np.float32),
        sensor_directions=(t.dir / norms[:, None]).astype(np.float32),
        module_index=module.astype(np.int64),
        string_index=t.line.astype(np.int64),
        sensor_ids=ids,
        sensor_id_names=("dom_id", "channel_id", "pmt_id"),
        sensor_t0=t.t0.astype(np.float32),
        pmt_radius=float(pmt_radius),
    )
