"""recoml.data.allocator: DataLoader workers keep freed memory instead of faulting it back in per batch."""

from __future__ import annotations

import subprocess
import sys

import pytest

from recoml.data.allocator import init_worker
from recoml.data.datamodule import EventDataModule
from tests.data.test_slots import write_hits

# Three 8 MB buffers written and freed per round, as a worker's transient buffers are per batch; prints
# the minor page faults of rounds 2-6.
_ROUNDS = """
import resource, sys
import numpy as np
from recoml.data.allocator import keep_freed_memory
if sys.argv[1] == "keep" and not keep_freed_memory():
    sys.exit("not glibc")
per_round = []
for _ in range(6):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    buffers = [np.ones(1 << 20) for _ in range(3)]
    del buffers
    per_round.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sum(per_round[1:]))
"""


def _faults(mode: str) -> int:
    """Faults of the rounds in a fresh process (the allocator is never changed in the test process)."""
    out = subprocess.run([sys.executable, "-c", _ROUNDS, mode], capture_output=True, text=True)
    if "not glibc" in out.stderr:
        pytest.skip("not glibc")
    assert out.returncode == 0, out.stderr
    return int(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc (Linux)")
def test_freed_buffers_are_reused_without_page_faults():
    """glibc's own thresholds hand the freed 24 MB back to the kernel every round (page faults each time);
    with the thresholds fixed the next rounds reuse it: (almost) no fault after the first."""
    kept = _faults("keep")
    assert _faults("default") > 500 * 5  # 24 MB = 6,144 pages a round; glibc's fault-around maps several
    assert kept < 50


def test_recoml_loaders_start_workers_with_the_allocator_set(tmp_path):
    path = write_hits(tmp_path)
    dm = EventDataModule(path, batch_size=8, num_workers=2, fractions=(1.0, 0.0, 0.0))
    loader = dm.train_dataloader()
    assert loader.worker_init_fn is init_worker
    assert next(iter(loader)).n_events == 8  # the workers started with it
    assert EventDataModule(path, batch_size=8, num_workers=0).train_dataloader().worker_init_fn is None
