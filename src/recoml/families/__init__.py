"""Detector families: each a self-contained package (detector, simulation, readers, family-specific tasks,
models and evaluators) plugged into the generic engine through :mod:`recoml.contracts` and config
``_target_``s. The engine imports no family."""
