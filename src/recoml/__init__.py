"""recoml: machine-learning reconstruction for particle-physics detectors."""

from __future__ import annotations

from recoml._version import __version__
from recoml.utils.resolvers import register as _register_resolvers

_register_resolvers()

__all__ = ["__version__", "load_model"]


def load_model(ckpt_path: str, map_location: str = "cpu"):
    """Rebuild a trained :class:`~recoml.tasks.module.RecoModule` (detector, representation, network, task,
    normalization) from a checkpoint alone, in eval mode."""
    from recoml.tasks.module import RecoModule

    module = RecoModule.load_from_checkpoint(ckpt_path, map_location=map_location)
    return module.eval()
