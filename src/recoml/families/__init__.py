"""Detector families: each a self-contained package (detector, readers, toy simulation, family-specific
tasks, models, evaluators and event displays; an image map where it has one) plugged into the generic
engine through :mod:`recoml.contracts` and declared import paths (docs/architecture.md). The engine imports
no family."""
