"""recoml: machine-learning reconstruction for particle-physics detectors."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
