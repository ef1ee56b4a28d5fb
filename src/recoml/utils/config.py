"""Configs as plain Python: what a function that takes a dict gets from a Hydra/OmegaConf node."""

from __future__ import annotations

from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf


def config_dict(cfg: DictConfig, resolve: bool = True, throw_on_missing: bool = False) -> dict[str, Any]:
    """``OmegaConf.to_container`` of a mapping node, typed as the dict it is (the library returns a union
    of every container kind)."""
    container = OmegaConf.to_container(cfg, resolve=resolve, throw_on_missing=throw_on_missing)
    if not isinstance(container, dict):
        raise TypeError(f"expected a mapping config node, got {type(container).__name__}")
    return {str(k): v for k, v in container.items()}


def instantiate_group(group: DictConfig | None) -> list[Any]:
    """Callbacks or loggers: each non-null entry with a ``_target_``."""
    if not group:
        return []
    return [instantiate(c) for c in group.values() if c is not None and "_target_" in c]
