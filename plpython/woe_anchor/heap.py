"""The backend's C heap while a fit runs: freed blocks kept for the next chunk, given back at the end.

A fit allocates and frees the same large blocks over and over: each chunk's
column values as the server aggregates them, their copies as Python bytes,
the numpy arrays decoded from them. glibc unmaps a freed block above its
mmap threshold and trims free space past its trim threshold at the top of
the heap, so the next chunk touches fresh pages again, and each first touch is a page fault that zeroes a page: 5M rows
took about 300,000 faults and 2.7 s of system time in one 10.6 s fit. Held
in the heap instead, the blocks are used again (about 145,000 faults).

``kept_for_reuse`` raises glibc's trim and mmap thresholds for the fit and,
whatever happens, trims the heap (``malloc_trim``) at the end. Setting them
turns glibc's own adjustment of both off for the rest of the session and
glibc cannot say what they were, so they are left where that adjustment ends
up (mmap 32 MiB, trim twice that), not at the 128 KiB it starts from, where
every later block above 128 KiB would be mapped and faulted in afresh.
Without glibc (no ``malloc_trim``) it does nothing.
"""
from __future__ import annotations

import contextlib
import ctypes

# mallopt's parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
# the ceiling of glibc's dynamic mmap threshold on 64-bit (mallopt(3)): smaller requests come from
# the heap (a chunk's column at the default fit_memory); larger ones too when a free chunk fits
KEPT_MMAP_THRESHOLD = 32 * 1024 * 1024
KEPT_TRIM_THRESHOLD = 2**31 - 1  # mallopt's largest: never trimmed while the fit runs, the end trims
AFTER_MMAP_THRESHOLD, AFTER_TRIM_THRESHOLD = KEPT_MMAP_THRESHOLD, 2 * KEPT_MMAP_THRESHOLD


def _glibc():
    try:
        libc = ctypes.CDLL(None)   # the backend's own symbols: the C library it runs on
        return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None
    except OSError:
        return None


@contextlib.contextmanager
def kept_for_reuse():
    libc = _glibc()
    if libc is None:
        yield
        return
    libc.mallopt(M_TRIM_THRESHOLD, ctypes.c_int(KEPT_TRIM_THRESHOLD))
    libc.mallopt(M_MMAP_THRESHOLD, ctypes.c_int(KEPT_MMAP_THRESHOLD))
    try:
        yield
    finally:
        libc.mallopt(M_MMAP_THRESHOLD, ctypes.c_int(AFTER_MMAP_THRESHOLD))
        libc.mallopt(M_TRIM_THRESHOLD, ctypes.c_int(AFTER_TRIM_THRESHOLD))
        libc.malloc_trim(ctypes.c_size_t(0))
