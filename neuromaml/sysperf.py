"""Process-level settings that make the CPU training path fast.

glibc's ``malloc`` serves every block above 32 MB with a fresh ``mmap`` and
returns it with ``munmap`` when freed. A meta-step allocates and frees thousands
of activation tensors of that size, so the kernel spends its time handing out
and zeroing new pages: measured on 2 cores, half of a small-CNN meta-step's CPU
time was system time. ``keep_freed_memory`` raises glibc's mmap and trim
thresholds (``mallopt``) so freed blocks stay in the heap and are reused; the
process's peak memory is unchanged, but it is not returned to the system until
exit. The ``neuromaml`` command calls it at start-up; set
``NEUROMAML_MALLOC=default`` to keep glibc's behaviour. It is a no-op where the C
library is not glibc.
"""
from __future__ import annotations

import ctypes
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_INT_MAX = 2**31 - 1   # mallopt takes a C int


def keep_freed_memory() -> bool:
    """Keep freed large blocks in the heap (see module doc). Returns True if applied."""
    if os.environ.get("NEUROMAML_MALLOC", "").lower() == "default" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _INT_MAX)) and bool(mallopt(_M_TRIM_THRESHOLD, _INT_MAX))
