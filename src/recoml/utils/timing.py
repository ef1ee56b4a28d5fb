"""Throughput timing shared by the benchmarks."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:  # only for the annotation: utilities sit below the contracts layer
    from recoml.contracts.batch import HitBatch


log = logging.getLogger(__name__)


def events_per_second(module: nn.Module, batch: HitBatch, n_iter: int) -> float:
    """Time ``module(batch)`` ``n_iter`` times after a warm-up, synchronizing CUDA around the loop."""
    device = batch.offsets.device
    with torch.no_grad():
        module(batch)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for _ in range(n_iter):
            module(batch)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        elapsed = time.perf_counter() - start
    rate = n_iter * batch.n_events / max(elapsed, 1e-12)
    log.info(
        "%s: %.0f events/s (%d events x %d iterations)", type(module).__name__, rate, batch.n_events, n_iter
    )
    return rate
