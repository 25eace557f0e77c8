"""Keep glibc's allocator from returning large blocks to the OS while a benchmark runs.

glibc ``malloc`` serves a block above its mmap threshold with a fresh ``mmap`` and unmaps it
on ``free``. A CPU step that allocates tensors of a few MB then touches new pages every call,
and the page faults cost more than the arithmetic. Which calls pay depends on the order of
allocations, so two ways of computing the same thing get different shares. In one measurement
(T5-large layer shapes, 1 thread, torch 2.13), the planned TensorPoly-I update went from 1.26
times the hand-written one to 1.03 times once the allocator kept its memory, and both ran about
1.6 times as fast. :func:`keep_freed_memory` raises the mmap and trim thresholds with
``mallopt``, which is what ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` do when set
before Python starts.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

__all__ = ["keep_freed_memory"]

logger = logging.getLogger(__name__)

# mallopt parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# The largest mmap threshold glibc accepts on 64-bit systems: 4 * 1024 * 1024 * sizeof(long), per mallopt(3).
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed blocks for reuse; return whether it was applied.

    The mmap threshold goes to its 32 MiB maximum and the trim threshold to 1 GiB. Returns
    ``False`` (and changes nothing) where the C library has no ``mallopt``, as on macOS or musl.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        logger.info("no mallopt in the C library %r; allocator settings unchanged", name)
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    applied = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)) and bool(mallopt(_M_TRIM_THRESHOLD, 1 << 30))
    if not applied:
        logger.info("mallopt rejected the thresholds; allocator settings may be unchanged")
    return applied
