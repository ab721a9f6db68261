"""Keep freed memory in the process (glibc's ``mallopt``), for the processes that train cohorts on CPU.

Why: a cohort iteration allocates and frees tens of activation tensors of ~0.5-1 MB. glibc returns the
top of its heap to the system whenever more than a few MB of it are free (its dynamic trim
threshold), which happens every iteration, so the next iteration's tensors are fresh pages that fault
and are zeroed on first touch. Telling glibc to keep up to ``TRIM_THRESHOLD`` free (and to serve
allocations up to ``MMAP_THRESHOLD`` from the heap) made a cohort iteration of the default recipe
13-19 % faster on the development machine (batch 1,024-2,048; docs/population_speed.md, "Heap reuse, runs
from one queue, pieces by L2"), and the single-run loop no faster (its tensors are half the size), so
only processes that train cohorts on CPU set it (the cohort workers, and a population fit's own process).

The cost is memory: a process keeps its peak heap instead of returning it. Elsewhere than glibc (macOS,
musl) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3  # glibc's malloc.h
TRIM_THRESHOLD = 512 << 20  # free heap kept before any is returned to the system
TOP_PAD = 64 << 20  # extra heap taken whenever the heap grows
MMAP_THRESHOLD = 32 << 20  # larger allocations still get pages of their own (32 MB: glibc's most, 64-bit)


def keep_freed_memory() -> bool:
    """Set the thresholds above in this process; True when glibc took them."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    settings = ((M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD))
    taken = [mallopt(option, value) == 1 for option, value in settings]  # every one tried
    return all(taken)
