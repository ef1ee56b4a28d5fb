"""Config values checked up front, one sentence each, before any data is read or model built.

A wrong value (``batch_size=-1``, ``lr=abc``, ``width=0``) otherwise surfaces minutes later as a
traceback deep in PyTorch, or worse, succeeds (``max_epochs=0`` reported untrained test metrics).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

from recoml.errors import ConfigError

_MISSING = object()
#: A check returns None when the value is fine, else what was expected (for the message).
Check = Callable[[Any], "str | None"]


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def positive_int(value: Any) -> str | None:
    return None if _is_int(value) and value > 0 else "a positive integer"


def non_negative_int(value: Any) -> str | None:
    return None if _is_int(value) and value >= 0 else "an integer >= 0"


def integer(value: Any) -> str | None:
    return None if _is_int(value) else "an integer"


def positive_number(value: Any) -> str | None:
    return None if _is_number(value) and value > 0 else "a positive number"


def max_epochs(value: Any) -> str | None:
    return (
        None
        if value is None or (_is_int(value) and (value > 0 or value == -1))
        else ("a positive integer (or -1 for no limit with max_steps)")
    )


def positive_ints(value: Any) -> str | None:
    values = list(value) if OmegaConf.is_list(value) or isinstance(value, list | tuple) else [value]
    return (
        None
        if values and all(_is_int(v) and v > 0 for v in values)
        else "a positive integer or a list of them"
    )


#: (key, check) for ``python -m recoml.train``; keys absent from a config are skipped.
TRAIN_CHECKS: tuple[tuple[str, Check], ...] = (
    ("seed", integer),
    ("dataset.batch_size", positive_int),
    ("dataset.eval_batch_size", positive_int),
    ("dataset.num_workers", non_negative_int),
    ("optimizer.lr", positive_number),
    ("trainer.max_epochs", max_epochs),
    ("trainer.accumulate_grad_batches", positive_int),
    ("model.net.width", positive_int),
    ("model.net.hidden", positive_ints),
    ("model.net.head_hidden", positive_ints),
    ("normalization_events", positive_int),
)


def check_config_values(cfg: DictConfig, checks: Sequence[tuple[str, Check]] = TRAIN_CHECKS) -> None:
    """ConfigError for the first value that fails its check (null and absent values are left alone)."""
    for key, check in checks:
        value = OmegaConf.select(cfg, key, default=_MISSING)
        if value is _MISSING or value is None:
            continue
        expected = check(value)
        if expected is not None:
            raise ConfigError(f"{key}: expected {expected}, got {value!r}")
