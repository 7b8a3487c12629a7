"""The process's heap: memory a compile frees is kept for its next allocation, not handed back to the kernel.

glibc gives a freed block back to the kernel once the free memory at the top of its heap exceeds
M_TRIM_THRESHOLD (128 KB by default), and serves a large block from a fresh mapping; the next allocation of
that size faults every page in again, each zeroed by the kernel. A compile allocates and frees the
activations of every block on the calibration data, tens to hundreds of MB at a time: LeNet on chip_a took
about 700,000 page faults, 1.5 to 1.8 of its 9 CPU seconds spent in the kernel. With the heap's top never
trimmed, grown 256 MB at a time, and blocks up to 256 MB served from it rather than from their own mappings,
freed blocks are reused without faults (the figures: docs/scale.md). The price: the process holds on to its peak
memory until it exits, which a compile, or a sweep worker running its next trial, reaches again anyway.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache

M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3  # mallopt's parameters (malloc.h)
TRIM_THRESHOLD = 2**31 - 1  # bytes: in effect never
TOP_PAD = 2**28  # bytes the heap grows by beyond a request (address space; pages are touched only when used)
MMAP_THRESHOLD = 2**28  # bytes: a larger block (an ImageNet-size activation) still gets its own mapping

_done = False


@cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(ctypes.util.find_library("c") or None)


def keep_freed_memory() -> bool:
    """Set the heap's trim threshold, top pad and mmap threshold once per process; True where the C library took them
    (glibc; elsewhere nothing changes)."""
    global _done
    if _done:
        return True
    try:
        _done = all(_libc().mallopt(param, value) for param, value in
                    ((M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD), (M_MMAP_THRESHOLD, MMAP_THRESHOLD)))
    except (OSError, AttributeError):  # no C library to load, or one without mallopt
        _done = False
    return _done


def give_back_freed_memory() -> None:
    """Hand the heap's free memory back to the kernel now (glibc's malloc_trim): a compile step starts from
    what the process really holds, so that the peak measured for it is its own (dse.compile.memory)."""
    try:
        _libc().malloc_trim(0)
    except (OSError, AttributeError):
        pass
