"""Open ROOT files with uproot and read entry ranges of plain numeric branches, with clear errors.

Everything a user can get wrong about an input (not a ROOT file, wrong tree, misspelt branch, a branch of
objects such as raw WCSim's ``WCSimRootEvent``) is checked when the file is opened, before any output is
written, and reported as one DataError sentence that names the file and says what was found instead.
"""

from __future__ import annotations

import difflib
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import uproot
from uproot.interpretation.jagged import AsJagged
from uproot.interpretation.numerical import AsDtype

from recoml.errors import DataError

__all__ = ["describe_interpretation", "event_boundary", "open_tree", "read_branches", "tree_names"]

log = logging.getLogger(__name__)

_TREE_CLASSES = ("TTree", "TNtuple", "TNtupleD")
FLATTEN_HINT = (
    "branches of class objects must be flattened first into per-event numeric branches (e.g. hitx, hity, "
    "hitz, charge, time, energy, vertex), for example with a short ROOT macro (raw WCSim output is read "
    "as it is with convert=raw_wcsim); see docs/converting.md"
)


def _open_file(path: Path) -> Any:
    if not path.is_file():
        raise DataError(f"{path}: input file not found")
    try:
        return uproot.open(path, array_cache=None, object_cache=None)
    except Exception as exc:  # uproot raises ValueError/OSError/struct errors for foreign files
        raise DataError(f"{path}: not a ROOT file or unreadable by uproot ({exc})") from exc


def tree_names(file: Any) -> list[str]:
    """Names (without cycle) of the TTrees in an opened file, sub-directories included."""
    names = []
    for key, cls in file.classnames(recursive=True).items():
        if cls in _TREE_CLASSES:
            names.append(key.rsplit(";", 1)[0])
    return sorted(set(names))


#: Objects only raw WCSim output holds: its event tree of WCSimRootEvent class containers and its geometry.
RAW_WCSIM_KEYS = ("wcsimT", "wcsimGeoT", "wcsimRootOptionsT")


def check_not_raw_wcsim(path: Path, file: Any) -> None:
    """DataError saying what to do when ``file`` is raw WCSim output, whatever mapping was chosen: its
    hits live in C++ class containers (WCSimRootEvent) that no branch mapping can read."""
    names = {k.rsplit(";", 1)[0]: c for k, c in file.classnames(recursive=False).items()}
    found = [k for k in RAW_WCSIM_KEYS if k in names]
    if found:
        raise DataError(
            f"{path} is raw WCSim output ({', '.join(repr(k) for k in found)}: "
            "WCSimRootEvent class containers), "
            "which a branch mapping cannot read; convert it with convert=raw_wcsim detector=from_file "
            f"detector.path={path} (its own geometry tree; docs/converting.md, 'Raw WCSim output')"
        )


def open_tree(path: str | os.PathLike, tree: str) -> Any:
    """The TTree ``tree`` of the ROOT file ``path`` (DataError listing the trees found if it is absent)."""
    path = Path(path)
    file = _open_file(path)
    check_not_raw_wcsim(path, file)
    trees = tree_names(file)
    if tree not in trees:
        other = {k.rsplit(";", 1)[0]: c for k, c in file.classnames(recursive=True).items()}
        if tree in other:
            raise DataError(
                f"{path}: '{tree}' is a {other[tree]}, not a TTree (the converter reads TTrees); "
                f"trees found: {trees}"
            )
        close = difflib.get_close_matches(tree, trees, n=3, cutoff=0.4)
        hint = f" (did you mean {close}?)" if close else ""
        raise DataError(f"{path}: no tree '{tree}'; trees found: {trees}{hint}")
    return file[tree]


def describe_interpretation(branch: Any) -> tuple[bool, str]:
    """Whether a branch holds plain numbers (fixed-size or jagged) and a short description of its type."""
    try:
        interp = branch.interpretation
    except Exception as exc:  # uproot raises for streamers it does not know
        return False, f"{branch.typename} ({type(exc).__name__})"
    if isinstance(interp, AsDtype):
        return True, branch.typename
    if (
        isinstance(interp, AsJagged)
        and isinstance(interp.content, AsDtype)
        and interp.content.inner_shape == ()
    ):
        return True, branch.typename
    return False, f"{branch.typename} ({type(interp).__name__})"


def check_branches(tree: Any, branches: list[str], path: str | os.PathLike) -> None:
    """Every branch exists (else the closest names) and holds plain numbers (else the flattening hint)."""
    keys = tree.keys(recursive=True)
    short = {k.rsplit("/", 1)[-1]: k for k in keys}
    for name in branches:
        try:
            branch = tree[name]
        except uproot.KeyInFileError:
            close = difflib.get_close_matches(name, list(keys) + list(short), n=5, cutoff=0.5)
            close = list(dict.fromkeys(short.get(c, c) for c in close))
            hint = (
                f"closest names: {close}" if close else f"the tree has {len(keys)} branches, e.g. {keys[:8]}"
            )
            raise DataError(f"{path}: tree '{tree.name}' has no branch '{name}'; {hint}") from None
        ok, what = describe_interpretation(branch)
        if not ok:
            raise DataError(
                f"{path}: branch '{name}' of tree '{tree.name}' holds objects of type {what} that uproot "
                f"cannot read as flat numeric arrays; {FLATTEN_HINT}"
            )


def read_branches(tree: Any, branches: list[str], start: int, stop: int) -> dict[str, Any]:
    """Entries ``[start, stop)`` of each branch: numpy for fixed-size, awkward for jagged branches."""
    out: dict[str, Any] = {}
    for name in branches:
        branch = tree[name]
        library = "ak" if isinstance(branch.interpretation, AsJagged) else "np"
        out[name] = branch.array(entry_start=start, entry_stop=stop, library=library)
    return out


def event_boundary(tree: Any, column: str, row: int, n_rows: int, window: int = 4096) -> int:
    """First row ``>= row`` that starts a new event in a long tree (rows of one event are consecutive).

    Chunks of a long tree are cut at these rows so that no event is split between two chunks, whichever
    process reads them; only a small window of the event column is read around the cut.
    """
    if row <= 0:
        return 0
    if row >= n_rows:
        return n_rows
    start = row - 1
    while start < n_rows - 1:
        stop = min(n_rows, start + window)
        ev = np.asarray(tree[column].array(entry_start=start, entry_stop=stop, library="np"))
        change = np.flatnonzero(ev[1:] != ev[:-1])
        if len(change):
            return start + int(change[0]) + 1
        start = stop - 1
        window *= 2
    return n_rows
