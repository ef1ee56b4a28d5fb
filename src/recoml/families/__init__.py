"""Detector families: self-contained packages plugging into the generic engine (docs/architecture.md).
Each brings its detector description, readers, toy simulation and (where it has one) an image map."""
