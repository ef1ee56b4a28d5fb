"""Detector families: each brings its detector description, readers, toy simulation and (where it has
one) an image map; the generic engine reaches them only through config ``_target_``s."""
