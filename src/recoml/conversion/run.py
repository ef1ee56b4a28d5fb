"""From a composed ``convert`` config to a conversion call (kept out of the thin Hydra entry point)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.utils import get_method, instantiate
from omegaconf import DictConfig, OmegaConf

from recoml.conversion.mapping import RootMapping, TrackmlMapping, parse_mapping
from recoml.conversion.pipeline import convert_root
from recoml.errors import ConfigError

__all__ = ["convert_from_config"]


def _input(cfg: DictConfig) -> Any:
    if OmegaConf.is_missing(cfg, "input") or cfg.input in (None, ""):
        raise ConfigError("input is required: input='data/*.root' (ROOT) or input=path/to/events/ (TrackML)")
    value = cfg.input
    return [str(v) for v in value] if OmegaConf.is_list(value) else str(value)


def convert_from_config(cfg: DictConfig) -> Path:
    """Run the conversion ``cfg`` describes (``cfg.convert`` the mapping, ``cfg.detector`` optional)."""
    mapping = parse_mapping(cfg.convert)
    options = {
        "overwrite": bool(cfg.overwrite),
        "n_workers": int(cfg.n_workers),
        "hash_inputs": bool(cfg.hash_inputs),
        "progress": cfg.progress,
    }
    inputs = _input(cfg)
    if isinstance(mapping, TrackmlMapping):
        if isinstance(inputs, list):
            if len(inputs) != 1:
                raise ConfigError(f"TrackML input must be one directory of events, got {inputs}")
            inputs = inputs[0]
        return get_method(mapping.converter)(inputs, cfg.output, mapping, **options)
    assert isinstance(mapping, RootMapping)
    detector = None
    if cfg.get("detector") is not None:  # matches hit positions, and stamps the store with its identity
        detector = instantiate(cfg.detector)
    return convert_root(
        inputs,
        cfg.output,
        mapping,
        detector=detector,
        chunk_size=int(cfg.chunk_size),
        nan_policy=str(cfg.nan_policy),
        max_entries=None if cfg.max_entries is None else int(cfg.max_entries),
        **options,
    )
