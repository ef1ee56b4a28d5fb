"""Safe arithmetic expressions over branch arrays, for mapping configs (``hit_time: "time * 1.0"``).

A mapping must be able to scale units, combine branches and map particle codes without running arbitrary
Python from a YAML file, so expressions are parsed with :mod:`ast` and only a whitelist is evaluated:
numbers, branch names, ``+ - * / // % **``, comparisons, ``& | ~``, subscripts with constant indices
(``vtx[:, 0]``) and the functions in :data:`FUNCTIONS`. Values are numpy arrays (per-event branches) or
awkward arrays (jagged per-hit branches); numpy ufuncs work on both.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import awkward as ak
import numpy as np

from recoml.errors import ConfigError

__all__ = ["FUNCTIONS", "Expression", "angles_from_direction", "event_min", "pdg_label"]

#: PDG code (absolute value) -> recoml label (docs/design.md: gamma 0, e 1, mu 2, pi0 3, other -1).
PDG_LABELS = {22: 0, 11: 1, 13: 2, 111: 3}


def _is_ak(*values: Any) -> bool:
    return any(isinstance(v, ak.Array) for v in values)


def _where(cond: Any, a: Any, b: Any) -> Any:
    return ak.where(cond, a, b) if _is_ak(cond, a, b) else np.where(cond, a, b)


def event_min(values: Any, where: Any = None) -> Any:
    """Per event, the smallest of its hits' ``values`` (jagged) among those where ``where`` holds, or
    among all when none does (0 for an event without hits): a per-event reference such as KM3NeT's
    trigger time, the earliest triggered hit (``t - event_min(t, trig > 0)``)."""
    if not _is_ak(values):
        raise ConfigError("event_min(values, where) needs per-hit values (a jagged branch, layout: jagged)")
    smallest = ak.min(values, axis=1)
    if where is not None:
        chosen = ak.min(values[where], axis=1)
        smallest = ak.where(ak.is_none(chosen), smallest, chosen)
    return ak.fill_none(smallest, 0)


def pdg_label(code: Any) -> Any:
    """recoml class label of a PDG particle code (sign ignored; -1 for anything else)."""
    absolute = abs(code)
    out: Any = absolute * 0 - 1
    for pdg, label in PDG_LABELS.items():
        out = _where(absolute == pdg, label, out)
    return out


def stack(*values: Any) -> Any:
    """Stack per-event (or per-hit) values along a new last axis: ``stack(vx, vy, vz)`` -> ``(..., 3)``."""
    if _is_ak(*values):
        return ak.concatenate([ak.Array(v)[..., np.newaxis] for v in values], axis=-1)
    return np.stack(np.broadcast_arrays(*values), axis=-1)


def angles_from_direction(dx: Any, dy: Any, dz: Any) -> Any:
    """``angles`` (docs/design.md): polar = arccos(d_y) (tank axis y), azimuth = atan2(d_z, d_x)."""
    norm = np.sqrt(dx * dx + dy * dy + dz * dz)
    return stack(np.arccos(np.clip(dy / norm, -1.0, 1.0)), np.arctan2(dz, dx))


def _eta(px: Any, py: Any, pz: Any) -> Any:
    return np.arcsinh(pz / np.maximum(np.hypot(px, py), 1e-12))


def _cast(dtype: str) -> Callable[[Any], Any]:
    def cast(value: Any) -> Any:
        return ak.values_astype(value, dtype) if _is_ak(value) else np.asarray(value).astype(dtype)

    cast.__name__ = dtype
    return cast


#: Functions an expression may call.
FUNCTIONS: dict[str, Callable[..., Any]] = {
    **{
        name: getattr(np, name)
        for name in (
            "sqrt abs exp log log10 sin cos tan arcsin arccos arctan arctan2 hypot sinh cosh tanh "
            "arcsinh floor ceil sign minimum maximum isnan isfinite"
        ).split()
    },
    "where": _where,
    "stack": stack,
    "pdg_label": pdg_label,
    "event_min": event_min,
    "angles": angles_from_direction,
    "pt": lambda px, py: np.hypot(px, py),
    "eta": _eta,
    "phi": lambda px, py: np.arctan2(py, px),
    **{t: _cast(t) for t in ("float32", "float64", "int32", "int64", "bool")},
}

_BINOPS: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: lambda a, b: _power(a, b),
    ast.BitAnd: operator.and_,
    ast.BitOr: operator.or_,
}
_UNARY: dict[type, Callable[[Any], Any]] = {
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
    ast.Invert: operator.invert,
}
_COMPARE: dict[type, Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
}


@dataclass(frozen=True)
class Expression:
    """A parsed, checked expression: ``names`` are the variables (branches or aliases) it reads."""

    text: str
    tree: ast.Expression
    names: frozenset[str]

    @classmethod
    def parse(cls, text: str | int | float, where: str) -> Expression:
        """Parse ``text``; ConfigError naming ``where`` (the mapping field) for anything not allowed."""
        source = str(text).strip()
        try:
            tree = ast.parse(source, mode="eval")
        except SyntaxError as exc:
            shown = source.replace("\n", "\\n")  # the sentence stays one line
            raise ConfigError(f"{where}: expression '{shown}' is not valid ({exc.msg})") from exc
        names: set[str] = set()
        _check(tree.body, source, where, names)
        return cls(source, tree, frozenset(names))

    def evaluate(self, variables: Mapping[str, Any]) -> Any:
        """The value over ``variables``; ConfigError when a name it reads is not among them."""
        missing = sorted(self.names - set(variables))
        if missing:
            raise ConfigError(
                f"expression '{self.text}' reads {missing}, which are not among the values given "
                f"({sorted(variables)[:20]})"
            )
        return _eval(self.tree.body, variables)


def _check(node: ast.AST, source: str, where: str, names: set[str]) -> None:
    """Walk the tree and refuse every node outside the whitelist."""

    def bad(what: str) -> ConfigError:
        return ConfigError(
            f"{where}: expression '{source}' uses {what}, which mapping expressions do not allow"
        )

    if isinstance(node, ast.Constant):  # numbers only (`...` belongs in an index: _check_index)
        if not isinstance(node.value, int | float | bool):
            raise bad(f"the constant {node.value!r}")
    elif isinstance(node, ast.Name):
        if node.id in FUNCTIONS:
            raise bad(f"the function '{node.id}' without calling it")
        names.add(node.id)
    elif isinstance(node, ast.BinOp):
        if type(node.op) not in _BINOPS:
            raise bad(f"the operator {type(node.op).__name__}")
        _check(node.left, source, where, names)
        _check(node.right, source, where, names)
    elif isinstance(node, ast.UnaryOp):
        if type(node.op) not in _UNARY:
            raise bad(f"the operator {type(node.op).__name__}")
        _check(node.operand, source, where, names)
    elif isinstance(node, ast.Compare):
        if len(node.ops) != 1 or type(node.ops[0]) not in _COMPARE:
            raise bad("a chained or unsupported comparison")
        _check(node.left, source, where, names)
        _check(node.comparators[0], source, where, names)
    elif isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            called = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
            raise bad(f"the call '{called}(...)' (functions allowed: {sorted(FUNCTIONS)})")
        if node.keywords:
            raise bad("keyword arguments")
        for arg in node.args:
            _check(arg, source, where, names)
    elif isinstance(node, ast.Subscript):
        _check(node.value, source, where, names)
        _check_index(node.slice, bad)
    else:
        raise bad(f"a {type(node).__name__} construct")


def _check_index(node: ast.AST, bad: Callable[[str], ConfigError]) -> None:
    parts = node.elts if isinstance(node, ast.Tuple) else [node]
    for part in parts:
        if isinstance(part, ast.Slice):
            for bound in (part.lower, part.upper, part.step):
                if bound is not None:
                    _check_index(bound, bad)
        elif isinstance(part, ast.UnaryOp) and isinstance(part.op, ast.USub):
            _check_index(part.operand, bad)
        elif not (isinstance(part, ast.Constant) and (isinstance(part.value, int) or part.value is Ellipsis)):
            raise bad("an index that is not a constant integer or slice")


#: Largest exponent a mapping may raise to: physics needs squares and cubes, ``9**9**9`` would hang.
MAX_EXPONENT = 64


def _power(base: Any, exponent: Any) -> Any:
    """``base ** exponent`` with a bounded exponent (Python ints grow without limit, the time with them)."""
    if np.any(np.abs(np.asarray(exponent, dtype=float)) > MAX_EXPONENT):
        raise ConfigError(
            f"an exponent of {exponent} is outside [-{MAX_EXPONENT}, {MAX_EXPONENT}]; "
            "mappings allow bounded powers only"
        )
    return operator.pow(base, exponent)


def _eval(node: ast.AST, env: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return env[node.id]
    if isinstance(node, ast.BinOp):
        return _BINOPS[type(node.op)](_eval(node.left, env), _eval(node.right, env))
    if isinstance(node, ast.UnaryOp):
        return _UNARY[type(node.op)](_eval(node.operand, env))
    if isinstance(node, ast.Compare):
        return _COMPARE[type(node.ops[0])](_eval(node.left, env), _eval(node.comparators[0], env))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):  # _check allows named calls only
        return FUNCTIONS[node.func.id](*(_eval(a, env) for a in node.args))
    if isinstance(node, ast.Subscript):
        return _eval(node.value, env)[_index(node.slice)]
    raise AssertionError(f"unchecked node {type(node).__name__}")  # pragma: no cover - _check refuses it


def _index(node: ast.AST) -> Any:
    if isinstance(node, ast.Tuple):
        return tuple(_index(e) for e in node.elts)
    if isinstance(node, ast.Slice):
        return slice(*(None if b is None else _index(b) for b in (node.lower, node.upper, node.step)))
    if isinstance(node, ast.UnaryOp):
        return -_index(node.operand)
    return node.value  # type: ignore[attr-defined]
