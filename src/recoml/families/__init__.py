"""Detector families: self-contained packages plugging into the generic engine (docs/architecture.md)."""
