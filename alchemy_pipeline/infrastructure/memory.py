"""Handing freed memory back to the system between the large steps of a long run."""

import ctypes

import pyarrow as pa

# The C library the interpreter itself runs on; malloc_trim is glibc's only.
_TRIM = getattr(ctypes.CDLL(None), "malloc_trim", None)


def release_free_memory() -> None:
    """Asks Arrow's allocator and glibc's to return the memory they hold free: the steps of one run
    follow each other in one process, and without this each would start with the last one's freed
    memory still held."""
    pa.default_memory_pool().release_unused()
    if _TRIM is not None:
        _TRIM(0)
