"""``recoml.bench``: the one home of recoml's throughput measurements (``python -m recoml.bench``).

Suites (``suites=[...]``): ``simulation``, ``loading``, ``images``, ``knn``, ``points``, ``train``
(:mod:`recoml.bench.suites`) and ``graphs`` (kNN by event size, tracking graph construction at 100k hits:
:mod:`recoml.bench.graphs`). Each prints events/s; none is a timed test.
"""
