"""recoml: machine-learning reconstruction for particle-physics detectors."""

from __future__ import annotations

from recoml._version import __version__
from recoml.utils.resolvers import register as _register_resolvers

_register_resolvers()

__all__ = ["__version__", "load_model"]


def load_model(ckpt_path: str, map_location: str = "cpu", trust: tuple[str, ...] | list[str] = ()):
    """Rebuild a trained :class:`~recoml.tasks.module.RecoModule` (detector, representation, network, task,
    normalization) from a local checkpoint alone, in eval mode.

    Nothing in the file runs: tensors are read with ``weights_only=True`` and only allowlisted ``_target_``s
    are built (recoml's classes, the shipped configs' targets, and those listed in ``trust``); anything
    else raises a :class:`~recoml.errors.RecomlError` (see docs/reliability.md)."""
    from recoml.io.checkpoint import load_checkpoint
    from recoml.tasks.module import build_module

    return build_module(load_checkpoint(ckpt_path, trust)).to(map_location)
