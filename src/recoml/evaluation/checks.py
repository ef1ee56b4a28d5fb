"""Value checks of a predictions file before any metric is computed.

A metric computed from NaN probabilities or from labels that name no class is a wrong number, not an
error, so evaluation refuses such a file first: one :class:`~recoml.errors.DataError` naming the file,
the field (its stored name), the first bad row and what was expected.
"""

from __future__ import annotations

import numpy as np

from recoml.errors import DataError
from recoml.prediction.reader import SectionData

__all__ = ["check_binary", "check_class_labels", "check_finite", "check_probabilities"]

#: How far a row of class probabilities may sum from 1 (float32 softmax is within ~1e-6).
SUM_TOLERANCE = 1e-3


def _refuse(run: SectionData, name: str, problem: str, expected: str) -> DataError:
    return DataError(f"{run.path}: field '{run.stored_name(name)}' {problem}; expected {expected}")


def _refuse_values(
    run: SectionData, name: str, values: np.ndarray, bad: np.ndarray, what: str, expected: str
) -> None:
    """DataError counting the ``bad`` values (``what``) and naming the first and its row."""
    if bad.any():
        row = int(np.argmax(bad.reshape(len(bad), -1).any(axis=1)))
        first = values[bad].flat[0]
        problem = f"has {int(bad.sum())} {what}, the first {first:g} in row {row}"
        raise _refuse(run, name, problem, expected)


def check_finite(run: SectionData, name: str, expected: str = "finite numbers") -> np.ndarray:
    """The field as an array; DataError when it is not numeric or holds NaN/inf."""
    values = np.asarray(run.get(name))
    if values.dtype.kind not in "biuf":
        raise _refuse(run, name, f"has dtype {values.dtype}", expected)
    if values.dtype.kind == "f":
        _refuse_values(run, name, values, ~np.isfinite(values), "NaN/inf value(s)", expected)
    return values


def check_probabilities(run: SectionData, name: str, rows_sum_to_one: bool = False) -> np.ndarray:
    """Finite values in ``[0, 1]``; with ``rows_sum_to_one`` each row (one event's class probabilities)
    sums to 1 within :data:`SUM_TOLERANCE`."""
    expected = "probabilities in [0, 1]"
    if rows_sum_to_one:
        expected = "class probabilities (softmax outputs: in [0, 1], each row summing to 1)"
    values = check_finite(run, name, expected).astype(np.float64, copy=False)
    _refuse_values(run, name, values, (values < 0) | (values > 1), "value(s) outside [0, 1]", expected)
    if rows_sum_to_one and values.ndim == 2:
        sums = values.sum(axis=1)
        off = np.abs(sums - 1.0) > SUM_TOLERANCE
        _refuse_values(run, name, sums, off, "row(s) not summing to 1 (row sums)", expected)
    return values


def check_class_labels(run: SectionData, name: str, class_names: list[str]) -> np.ndarray:
    """Whole numbers in ``[0, len(class_names))`` (class indices, not the stored label values)."""
    n = len(class_names)
    expected = f"class indices 0..{n - 1} ({', '.join(class_names)})"
    values = np.asarray(run.get(name))
    if values.dtype.kind == "b":
        raise _refuse(run, name, "has dtype bool", expected)
    values = check_finite(run, name, expected)
    _refuse_values(run, name, values, values != np.floor(values), "non-integer value(s)", expected)
    _refuse_values(run, name, values, (values < 0) | (values >= n), f"label(s) outside [0, {n})", expected)
    return values.astype(np.int64)


def check_binary(run: SectionData, name: str) -> np.ndarray:
    """Truth flags: every value 0 or 1 (bool, integer or float)."""
    expected = "truth flags 0 or 1"
    values = check_finite(run, name, expected)
    _refuse_values(run, name, values, (values != 0) & (values != 1), "value(s) other than 0 and 1", expected)
    return values
