"""The conversion contract: external files (ROOT, CSV, HDF5) -> one event store."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol


class Converter(Protocol):
    """Reads ``inputs`` and writes the store at ``output`` (temporary name, renamed when complete);
    returns the number of events written. Mappings and reading options are the converter's own."""

    def __call__(self, inputs: Sequence[Path], output: Path, *, overwrite: bool = False) -> int: ...
