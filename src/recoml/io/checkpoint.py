"""Open a checkpoint as safely as a data file: nothing in it runs.

Two doors are closed here. ``torch.load(weights_only=True)`` refuses any pickled object beyond tensors
and plain values (a checkpoint cannot smuggle a function call in an extra key), and only local files are
read (a URL would go through loaders without that restriction). The model a checkpoint rebuilds is
Hydra-instantiated from the config it carries, so every ``_target_`` in that config, however deeply
nested (``_args_``, ``_partial_`` factories, lists), must be on an allowlist before anything is built:
recoml's own classes, the targets the shipped config groups name, and what the user passes in ``trust``
on the command line. The file itself can never widen the list. A model may read another checkpoint while
it is built (a tracking stage's frozen embedding); :func:`trusting` hands the user's list on to that read.
"""

from __future__ import annotations

import inspect
import logging
import pickle
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from recoml.conf import CONF_DIR
from recoml.errors import ConfigError, DataError

log = logging.getLogger(__name__)

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_TARGET_IN_YAML = re.compile(r"_target_\s*[:=]\s*['\"]?([A-Za-z_][\w.]*)")
_UNSUPPORTED = re.compile(r"Unsupported (?:global|operand)[^\n]*")
#: The targets the user trusts for the checkpoint reads of the current build (see :func:`trusting`).
_TRUSTED: ContextVar[frozenset[str]] = ContextVar("recoml_trusted_targets", default=frozenset())


@contextmanager
def trusting(trust: Iterable[str] = ()) -> Iterator[None]:
    """Inside this block every :func:`check_targets` also allows ``trust`` (the user's ``trust=[...]``): the
    checkpoints a model reads while it is built (a tracking stage's embedding) get the same list as the one
    the user opened. Only callers holding the command line's list enter it; a file never does."""
    token = _TRUSTED.set(_TRUSTED.get() | {str(t) for t in trust or ()})
    try:
        yield
    finally:
        _TRUSTED.reset(token)


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's top-level dict, loaded with ``weights_only=True`` from a local regular file."""
    text = str(path)
    if _URL.match(text):
        raise ConfigError(
            f"ckpt_path: {text} is a URL; recoml opens local checkpoint files only "
            "(download it, then pass the file)"
        )
    p = Path(text)
    if not p.exists():
        raise ConfigError(f"ckpt_path: no checkpoint at {p}")
    if not p.is_file():
        kind = "a directory" if p.is_dir() else "not a regular file"
        raise ConfigError(
            f"ckpt_path: {p} is {kind}; expected a .ckpt file written by python -m recoml.train"
        )
    try:
        raw = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = _UNSUPPORTED.search(str(err))
        detail = f" ({found.group(0)})" if found else ""
        raise DataError(
            f"{p}: refused: the checkpoint holds Python objects other than tensors and plain values{detail}, "
            "which recoml never loads because unpickling them can run code"
        ) from None
    except Exception as err:  # torch raises many types for a foreign or truncated file
        raise DataError(
            f"{p}: not a readable PyTorch checkpoint ({type(err).__name__}: {str(err).splitlines()[0][:200]})"
        ) from None
    if not isinstance(raw, dict):
        raise DataError(f"{p}: not a recoml checkpoint (a {type(raw).__name__}, expected a dict)")
    return raw


def stored_config(raw: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The resolved training config a recoml checkpoint carries (``hyper_parameters.config``)."""
    hyper = raw.get("hyper_parameters")
    config = hyper.get("config") if isinstance(hyper, dict) else None
    if not isinstance(config, dict) or "state_dict" not in raw:
        raise DataError(
            f"{path}: not a recoml checkpoint (expected 'state_dict' and 'hyper_parameters.config', "
            "as written by python -m recoml.train)"
        )
    try:  # what is checked must be what is built: resolve interpolations (oc.decode can make nodes) first
        resolved = OmegaConf.to_container(OmegaConf.create(config), resolve=True)
    except Exception as err:
        raise DataError(f"{path}: the stored config does not resolve ({type(err).__name__}: {err})") from None
    assert isinstance(resolved, dict)
    return {str(k): v for k, v in resolved.items()}


def state_mismatch(model: dict[str, Any], stored: dict[str, Any]) -> str:
    """How a checkpoint's ``stored`` tensors fail to fit a ``model``'s state dict (names and shapes), as a
    clause for one sentence; empty when they fit. ``torch.compile`` name parts are ignored."""

    def shapes(state: dict[str, Any]) -> dict[str, tuple[int, ...]]:
        return {
            str(k).replace("._orig_mod.", "."): tuple(v.shape)
            for k, v in state.items()
            if hasattr(v, "shape")
        }

    mine, theirs = shapes(model), shapes(stored if isinstance(stored, dict) else {})
    missing = sorted(set(mine) - set(theirs))
    unexpected = sorted(set(theirs) - set(mine))
    other = [k for k in mine if k in theirs and mine[k] != theirs[k]]
    parts = [f"{len(missing)} tensor(s) missing (e.g. {missing[:3]})"] if missing else []
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
    if other:
        k = other[0]
        parts.append(
            f"{len(other)} of another shape (e.g. {k}: {list(theirs[k])} in the file, {list(mine[k])} in the "
            "model)"
        )
    return ", ".join(parts)


def iter_targets(node: Any, where: str = "") -> Iterator[tuple[str, Any]]:
    """Every ``(dotted location, _target_ value)`` in a nested dict/list config."""
    if isinstance(node, dict):
        for key, value in node.items():
            here = f"{where}.{key}" if where else str(key)
            if key == "_target_":
                yield here, value
            else:
                yield from iter_targets(value, here)
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from iter_targets(value, f"{where}[{i}]")


def check_targets(config: dict[str, Any], source: str | Path, trust: Iterable[str] = ()) -> None:
    """ConfigError naming the first ``_target_`` of ``config`` that is not allowed to be built."""
    trusted = {str(t) for t in trust or ()} | _TRUSTED.get()
    for where, target in iter_targets(config):
        if isinstance(target, str) and (
            target in trusted or target in shipped_targets() or _is_recoml_class(target)
        ):
            continue
        raise ConfigError(
            f"{source}: refused to build {target!r} (at {where}): checkpoints may only name recoml's classes "
            f"and the targets of the shipped configs; if you trust its author, pass trust=[{target}]"
        )


@cache
def shipped_targets() -> frozenset[str]:
    """Every ``_target_`` named in the config groups recoml ships."""
    names: set[str] = set()
    for yaml in Path(CONF_DIR).rglob("*.yaml"):
        names.update(_TARGET_IN_YAML.findall(yaml.read_text()))
    return frozenset(names)


def _is_recoml_class(target: str) -> bool:
    """A class defined in recoml (re-exports allowed); attribute paths through imported modules are not."""
    if not re.fullmatch(r"recoml(\.[A-Za-z_]\w*)+", target):
        return False
    from hydra.utils import get_object

    try:
        obj = get_object(target)
    except Exception:
        return False
    return inspect.isclass(obj) and (obj.__module__ or "").split(".")[0] == "recoml"


@dataclass
class Checkpoint:
    """A checkpoint's parts: ``path``, the training ``config`` (plain dict), ``provenance``
    (``checkpoint["recoml"]``) and the ``state_dict``; ``trust``: the extra targets the user allowed when
    opening it, also allowed for the checkpoints its model reads while it is built."""

    path: Path
    config: dict[str, Any]
    provenance: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    train_keys: np.ndarray | None = None  # event keys of the training split (recoml.data.identity)
    trust: tuple[str, ...] = ()

    @property
    def cfg(self) -> DictConfig:
        return OmegaConf.create(self.config)

    def name_of(self, group: str) -> str | None:
        return (self.config.get(group) or {}).get("name")

    def describe(self) -> str:
        return f"checkpoint {self.path} (model={self.name_of('model')}, task={self.name_of('task')}, " + (
            f"detector={self.name_of('detector')})"
        )


def best_checkpoint(run_dir: str | Path) -> Path:
    """The best checkpoint of a training run directory (or of its ``checkpoints/``): the one the
    monitored-metric ModelCheckpoint recorded in ``last.ckpt``, which is the checkpoint training's test
    metrics come from; a run with a single other checkpoint needs no record."""
    run_dir = Path(run_dir)
    ckdir = run_dir / "checkpoints" if (run_dir / "checkpoints").is_dir() else run_dir
    last = ckdir / "last.ckpt"
    if last.is_file():
        for state in (read_checkpoint(last).get("callbacks") or {}).values():
            best = state.get("best_model_path") if isinstance(state, dict) and state.get("monitor") else None
            if best and (ckdir / Path(best).name).is_file():
                score = state.get("best_model_score")
                log.info(
                    "ckpt_path=%s: the best checkpoint %s (%s = %.4g; training's test metrics come from it)",
                    run_dir,
                    ckdir / Path(best).name,
                    state["monitor"],
                    float(score) if score is not None else float("nan"),
                )
                return ckdir / Path(best).name
    others = sorted(p for p in ckdir.glob("*.ckpt") if p.name != "last.ckpt")
    if len(others) == 1:
        log.info("ckpt_path=%s: the best checkpoint %s", run_dir, others[0])
        return others[0]
    if not others and last.is_file():
        log.info("ckpt_path=%s: no monitored best checkpoint in the run; using %s", run_dir, last)
        return last
    raise ConfigError(
        f"ckpt_path: {run_dir} holds {len(others) or 'no'} checkpoints and no record of the best; "
        "give the .ckpt file"
    )


def load_checkpoint(path: str | Path | None, trust: Iterable[str] = ()) -> Checkpoint:
    """Read a Lightning checkpoint written by ``recoml.train`` without running anything it holds
    (:mod:`recoml.io.checkpoint`): ConfigError/DataError when it is not one or names a target outside the
    allowlist (widened only by ``trust``, the user's list of extra ``_target_``s). A training run
    directory stands for its best checkpoint (:func:`best_checkpoint`)."""
    if path in (None, "", "???"):
        raise ConfigError(
            "ckpt_path: give the training run directory (its best checkpoint is used) or a checkpoint, "
            "e.g. ckpt_path=outputs/train/runs/<time>"
        )
    # read_checkpoint sees the text as given: Path() would turn "http://host/x" into "http:/host/x", a
    # missing local file instead of the URL it refuses.
    text = str(best_checkpoint(str(path))) if Path(str(path)).is_dir() else str(path)
    raw = read_checkpoint(text)
    path = Path(text)
    if path.name == "last.ckpt":
        log.info("checkpoint %s (the last epoch's; the run directory stands for its best)", path)
    config = stored_config(raw, path)
    check_targets(config, path, trust)
    if not isinstance(raw["state_dict"], dict):
        raise DataError(f"{path}: not a recoml checkpoint ('state_dict' is not a dict of tensors)")
    state = {k.replace("._orig_mod.", "."): v for k, v in raw["state_dict"].items()}  # torch.compile'd nets
    provenance = raw.get("recoml")
    events = raw.get("recoml_events") or {}
    keys = events.get("train_keys") if isinstance(events, dict) else None
    train_keys = None if keys is None else np.asarray(keys.numpy() if hasattr(keys, "numpy") else keys)
    return Checkpoint(
        path.resolve(),
        config,
        dict(provenance) if isinstance(provenance, dict) else {},
        state,
        train_keys,
        tuple(str(t) for t in trust or ()),
    )
