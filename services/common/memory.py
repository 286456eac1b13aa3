"""glibc's malloc told to keep freed big arrays for the next request instead of unmapping them.

glibc serves an allocation above its mmap threshold (128 KiB at first, then the largest block
freed so far, up to 32 MiB) with a fresh mmap and unmaps it on free, so a service that builds the
same multi-megabyte arrays per request page-faults them all in again every time: 6,800 minor
faults and about 22 of 77 ms of CPU per 30 s clip in the featurizer (`pipeline.analyse` timed
in-process; tests/unit/test_memory.py counts the faults). With a fixed 32 MiB mmap threshold
and a 256 MiB trim threshold the arrays are reused from the heap: no faults, 55 ms.

Memory stays bounded: what the heap keeps is at most the workers' peak working set plus the trim
threshold. Other C libraries (musl, macOS) are left as they are; REUSE_FREED_ARRAYS=0 leaves
glibc's defaults (bench/ingest.py does, for the path before).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

from services.common.config import Setting

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # <malloc.h>
M_MMAP_THRESHOLD = -3
REUSE = Setting("REUSE_FREED_ARRAYS", True, "all",
                "glibc keeps freed arrays for the next request (`services/common/memory.py`: mmap threshold 32 MiB, "
                "trim threshold 256 MiB); 0 leaves glibc's defaults")
MMAP_THRESHOLD = 32 << 20  # glibc's largest allowed value on 64-bit
TRIM_THRESHOLD = 256 << 20


def reuse_freed_arrays() -> bool:
    """Set the thresholds (glibc only); True when they took effect. Call once at start-up."""
    if not REUSE.as_bool():
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    if not done:
        log.warning("mallopt refused the thresholds: big arrays are mapped afresh per request")
    return done
