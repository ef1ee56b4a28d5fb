"""Property-based tests (hypothesis) of the readers users feed with files from elsewhere: whatever the
input, the store reader returns exactly what was written, and the split reader and the expression parser
either accept it or raise one RecomlError, never another exception and never a hang."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from recoml.conversion.expressions import Expression
from recoml.data.splits import SPLIT_KEYS, load_splits
from recoml.data.store import open_store, write_store
from recoml.errors import ConfigError, DataError

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def stores(draw):
    counts = np.array(draw(st.lists(st.integers(0, 6), min_size=1, max_size=30)), dtype=np.int64)
    n_hits = int(counts.sum())
    floats = st.floats(-1e6, 1e6, allow_nan=False, width=32)
    charge = np.array(draw(st.lists(floats, min_size=n_hits, max_size=n_hits)), dtype=np.float32)
    pmt = np.array(draw(st.lists(st.integers(0, 1766), min_size=n_hits, max_size=n_hits)), dtype=np.int32)
    energy = np.array(draw(st.lists(floats, min_size=len(counts), max_size=len(counts))), dtype=np.float32)
    rows = np.array(draw(st.lists(st.integers(0, len(counts) - 1), max_size=12)), dtype=np.int64)
    return counts, charge, pmt, energy, rows, draw(st.sampled_from(["h5", "pt"]))


@SETTINGS
@given(stores())
def test_store_reader_returns_exactly_what_was_written(case) -> None:
    counts, charge, pmt, energy, rows, fmt = case
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"s.{fmt}"
        write_store(
            path, {"event_hits_index": starts, "hit_charge": charge, "hit_pmt": pmt, "energy": energy}
        )
        with open_store(path) as store:
            store.validate(n_pmts=1767)
            flat, offsets, events = store.read(rows)
    expected = [np.arange(starts[r], starts[r] + counts[r]) for r in rows]
    positions = np.concatenate(expected) if expected else np.zeros(0, np.int64)
    np.testing.assert_array_equal(flat["hit_charge"], charge[positions])
    np.testing.assert_array_equal(flat["hit_pmt"], pmt[positions])
    np.testing.assert_array_equal(np.diff(offsets), counts[rows])
    np.testing.assert_array_equal(events["energy"], energy[rows])


@SETTINGS
@given(
    n_events=st.integers(0, 40),
    parts=st.fixed_dictionaries(
        {k: st.lists(st.integers(-5, 50), max_size=20) for k in SPLIT_KEYS},
    ),
    dtype=st.sampled_from(["int64", "int32", "uint16", "float64"]),
)
def test_split_reader_accepts_a_partition_or_raises_one_sentence(n_events, parts, dtype) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "splits.npz"
        arrays = {k: np.asarray(v, dtype=np.int64).astype(dtype) for k, v in parts.items()}
        np.savez(path, **arrays)
        try:
            splits = load_splits(path, n_events)
        except DataError as err:
            assert str(path) in str(err) and "\n" not in str(err)
            return
    seen = np.concatenate([splits[k] for k in SPLIT_KEYS])
    assert len(np.unique(seen)) == len(seen) and (seen >= 0).all() and (seen < n_events).all()


@SETTINGS
@given(st.text(max_size=40))
def test_expression_parser_accepts_or_raises_config_error(text: str) -> None:
    try:
        Expression.parse(text, "convert field 'hit_x'")
    except ConfigError as err:
        assert "convert field 'hit_x'" in str(err)


_ATOMS = st.sampled_from(["x", "y", "1", "2.5", "0", "-3", "x[0]", "abs(x)", "sqrt(y)"])
_OPS = st.sampled_from(["+", "-", "*", "/", "**", "//", "%", "<", "==", "&", "|"])


@settings(max_examples=60, deadline=2000)  # a hang (an unbounded power) fails the deadline
@given(st.lists(st.tuples(_OPS, _ATOMS), max_size=6), _ATOMS)
def test_allowed_expressions_finish_quickly(tail, head) -> None:
    """Arithmetic of allowed atoms (powers included) finishes within the deadline, whatever it yields."""
    text = head + "".join(f" {op} {atom}" for op, atom in tail)
    try:
        expr = Expression.parse(text, "f")
    except ConfigError:
        return
    env = {"x": np.array([1.0, 2.0, 3.0]), "y": np.array([4.0, 9.0, 16.0])}
    with np.errstate(all="ignore"):
        try:
            expr.evaluate(env)
        except Exception:  # noqa: BLE001 - type errors are the mapping's to report; only time matters here
            pass
