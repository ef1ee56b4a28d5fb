"""Search spaces: ``hpo.params`` (config key -> spec) parsed into Optuna distributions, and a trial's
values turned back into Hydra overrides.

Two spellings of a spec are accepted, so that lightning-hydra-template / hydra-optuna-sweeper users can
bring their search spaces along:

* a mapping: ``{low: 1.0e-4, high: 1.0e-2, log: true}``, ``{low: 2, high: 6}`` (int when both bounds
  are ints, or ``type: int``), ``{low: 0.0, high: 0.5, step: 0.1}``, ``{choices: [resnet18, resnet34]}``;
* Hydra's sweep syntax: ``tag(log, interval(1e-4, 1e-2))``, ``tag(int, interval(2, 6))``,
  ``range(16, 65, 16)`` (stop excluded), ``choice(resnet18, resnet34)``.

A key naming a config group (``model``) chooses among that group's options; any other key is a value in
the composed training config (``optimizer.lr``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, cast

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, RangeSweep
from hydra.errors import HydraException
from omegaconf import DictConfig, ListConfig, OmegaConf

from recoml.errors import ConfigError

Kind = Literal["float", "int", "categorical"]
Primitive = str | int | float | bool | None

_SPEC_FIELDS = {"type", "low", "high", "log", "step", "choices"}


@dataclass(frozen=True)
class Param:
    """One searched config key and its distribution."""

    key: str
    kind: Kind
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Primitive, ...] = ()

    @property
    def bounds(self) -> tuple[float | int, float | int]:
        """``(low, high)`` of a numeric parameter (both are set for every int or float Param)."""
        if self.low is None or self.high is None:
            raise ConfigError(f"{self.key}: a {self.kind} parameter needs 'low' and 'high'")
        return self.low, self.high

    def distribution(self) -> optuna.distributions.BaseDistribution:
        if self.kind == "categorical":
            return optuna.distributions.CategoricalDistribution(self.choices)
        low, high = self.bounds
        if self.kind == "int":
            return optuna.distributions.IntDistribution(
                int(low), int(high), log=self.log, step=int(self.step or 1)
            )
        return optuna.distributions.FloatDistribution(float(low), float(high), log=self.log, step=self.step)

    def suggest(self, trial: optuna.Trial) -> Primitive:
        """Draw this parameter for ``trial`` (the Optuna parameter name is the config key)."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        low, high = self.bounds
        if self.kind == "int":
            return trial.suggest_int(self.key, int(low), int(high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, float(low), float(high), step=self.step, log=self.log)


def parse_space(params: Mapping[str, Any] | DictConfig | None, source: str = "hpo.params") -> list[Param]:
    """``hpo.params`` -> parameters; every malformed spec is a :class:`ConfigError` naming its key."""
    if params is None:
        return []
    specs = OmegaConf.to_container(params, resolve=True) if isinstance(params, DictConfig) else params
    if not isinstance(specs, Mapping):
        raise ConfigError(f"{source}: expected a mapping of config key -> search spec, got {specs!r}")
    return [_parse_one(str(key), spec, f"{source}.{key!s}") for key, spec in specs.items()]


def _parse_one(key: str, spec: Any, where: str) -> Param:
    if isinstance(spec, str):
        return _from_sweep_string(key, spec, where)
    if isinstance(spec, ListConfig | list | tuple):
        return _checked(Param(key, "categorical", choices=tuple(spec)), where)
    if not isinstance(spec, Mapping):
        raise ConfigError(
            f"{where}: expected a mapping (low/high or choices) or a sweep string, got {spec!r}"
        )
    unknown = sorted(set(spec) - _SPEC_FIELDS)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}; a spec takes {sorted(_SPEC_FIELDS)}")
    kind = spec.get("type")
    if "choices" in spec:
        if kind not in (None, "categorical") or {"low", "high", "log", "step"} & set(spec):
            raise ConfigError(f"{where}: 'choices' cannot be combined with type/low/high/log/step")
        return _checked(Param(key, "categorical", choices=tuple(spec["choices"] or ())), where)
    if "low" not in spec or "high" not in spec:
        raise ConfigError(f"{where}: a range needs both 'low' and 'high' (or give 'choices')")
    low, high = spec["low"], spec["high"]
    for name, value in (("low", low), ("high", high), ("step", spec.get("step"))):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ConfigError(f"{where}.{name}: expected a number, got {value!r}")
    if kind is None:
        kind = "int" if isinstance(low, int) and isinstance(high, int) else "float"
    if kind not in ("int", "float"):
        raise ConfigError(f"{where}.type: expected int, float or categorical, got {kind!r}")
    numeric: Kind = "int" if kind == "int" else "float"
    return _checked(Param(key, numeric, low, high, bool(spec.get("log", False)), spec.get("step")), where)


def _from_sweep_string(key: str, text: str, where: str) -> Param:
    try:
        value = OverridesParser.create().parse_override(f"{key}={text}").value()
    except HydraException as err:
        raise ConfigError(f"{where}: cannot parse sweep {text!r}: {err}") from None
    if isinstance(value, ChoiceSweep):
        # _checked refuses the choices that are not primitives (nested lists, mappings).
        return _checked(Param(key, "categorical", choices=tuple(cast(list[Primitive], value.list))), where)
    tags = set(getattr(value, "tags", ()))
    if isinstance(value, IntervalSweep):
        if value.start is None or value.end is None:
            raise ConfigError(f"{where}: {text!r} needs both ends of the interval")
        kind: Kind = "int" if "int" in tags else "float"
        low, high = (int(value.start), int(value.end)) if kind == "int" else (value.start, value.end)
        return _checked(Param(key, kind, low, high, log="log" in tags), where)
    if isinstance(value, RangeSweep):
        if value.start is None or value.stop is None:
            raise ConfigError(f"{where}: {text!r} needs a start and a stop")
        values = [
            value.start + i * value.step for i in range(math.ceil((value.stop - value.start) / value.step))
        ]
        if not values:
            raise ConfigError(f"{where}: {text!r} is an empty range")
        kind = "int" if all(isinstance(v, int) for v in values) else "float"
        return _checked(Param(key, kind, values[0], values[-1], step=value.step), where)
    raise ConfigError(
        f"{where}: {text!r} is not a search range; use interval(...), range(...), choice(...) "
        "or a mapping with low/high or choices"
    )


def _checked(param: Param, where: str) -> Param:
    if param.kind == "categorical":
        if not param.choices:
            raise ConfigError(f"{where}: 'choices' is empty")
        bad = [c for c in param.choices if c is not None and not isinstance(c, str | int | float | bool)]
        if bad:
            raise ConfigError(f"{where}: choices must be strings, numbers, booleans or null, got {bad}")
        return param
    low, high = param.bounds
    if not low < high:
        raise ConfigError(f"{where}: 'low' ({low}) must be below 'high' ({high})")
    if param.log and param.step is not None:
        raise ConfigError(f"{where}: 'log' and 'step' cannot be combined")
    if param.log and low <= 0:
        raise ConfigError(f"{where}: a log range needs low > 0, got {low}")
    if param.step is not None and param.step <= 0:
        raise ConfigError(f"{where}: 'step' must be positive, got {param.step}")
    return param


# -- values -> Hydra overrides ------------------------------------------------------------------------
_BARE = re.compile(r"^[A-Za-z_/][\w./-]*$")
_RESERVED = {"true", "false", "null", "none", "nan", "inf", "yes", "no", "on", "off"}


def format_value(value: Any) -> str:
    """A Python value as the right-hand side of a Hydra command-line override (parses back to ``value``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        if _BARE.match(value) and value.lower() not in _RESERVED:
            return value
        escaped = value.replace("\\", "\\\\").replace("'", "\\'")
        return f"'{escaped}'"
    if isinstance(value, list | tuple):
        return "[" + ",".join(format_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{format_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} as a Hydra override")


def to_overrides(values: Mapping[str, Any]) -> list[str]:
    """``{"optimizer.lr": 1e-3, "model": "gnn"}`` -> ``["optimizer.lr=0.001", "model=gnn"]``."""
    return [f"{key}={format_value(value)}" for key, value in values.items()]


def override_key(override: str) -> str:
    """``+a.b=1`` -> ``a.b``; ``~a`` -> ``a``; ``a@pkg=x`` -> ``a``."""
    return override.split("=", 1)[0].lstrip("+~").split("@", 1)[0]
