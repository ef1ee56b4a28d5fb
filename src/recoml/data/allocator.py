"""Keep freed memory in a DataLoader worker's heap instead of handing it back to the kernel.

Why: a worker builds each batch in transient buffers of a few MB (an HK batch of 256 events: 2 MB of
pixel indices, several of those, and the gathered hits). glibc's malloc serves buffers above its mmap
threshold with fresh pages and trims the top of its heap back to the kernel once the free space there
exceeds twice that threshold, both adjusted at run time; in a worker the pattern of sizes left it trimming
after every batch, so every batch took the pages back with a page fault each (HK: 190-340 faults and
0.6-0.9 ms of system time per batch, and 1 ms more user time in ``prepare``, about 10 % of the batch).
With the thresholds fixed above the batch's transient buffers the heap keeps them: freed memory is reused
by the next batch (the worker's resident memory stays at its peak).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

#: mallopt parameters (glibc malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Buffers up to this size come from the heap (glibc's own maximum for the dynamic threshold on 64 bits).
MMAP_THRESHOLD = 32 << 20
#: Free memory kept at the top of the heap: several batches' transient buffers.
TRIM_THRESHOLD = 512 << 20


def keep_freed_memory(mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Fix glibc's mmap and trim thresholds in this process (both must be set: setting either one turns off
    glibc's adjustment of the other); False where the C library is not glibc (nothing changes)."""
    with contextlib.suppress(OSError, AttributeError, TypeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        if not hasattr(libc, "gnu_get_libc_version"):
            return False
        done = libc.mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold)) == 1
        return libc.mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)) == 1 and done
    return False


def init_worker(worker_id: int) -> None:
    """``worker_init_fn`` of recoml's DataLoaders: :func:`keep_freed_memory` in each worker."""
    if not keep_freed_memory():
        log.debug("DataLoader worker %d: malloc thresholds left as they are (not glibc)", worker_id)
