"""Errors that users see: one clear sentence naming the file, the field and what was expected."""

from __future__ import annotations


class RecomlError(Exception):
    """Base class of every error recoml raises on purpose (entry points print these without a traceback)."""


class DataError(RecomlError, ValueError):
    """An input file or array does not match what recoml expects."""


class GeometryError(RecomlError, ValueError):
    """A detector description is inconsistent or cannot be read."""


class ConfigError(RecomlError, ValueError):
    """A configuration asks for something that cannot work (e.g. a model the detector cannot feed)."""
