"""Keep large XLA:CPU buffers on the heap instead of fresh ``mmap`` pages.

XLA on the CPU allocates its buffers with ``malloc``. glibc serves blocks above its mmap
threshold (at most 32 MiB by default) with a fresh ``mmap`` and unmaps them on free, so every
step of a training loop page-faults its large activations in again: on this project's
machines that alone made a 32 MiB elementwise op 5x slower than the memory copy it is
(``docs/performance.md``). Raising the mmap and trim thresholds keeps freed blocks in the
process for reuse, the way jemalloc or tcmalloc would.

This is a process-wide setting, so the library never applies it on import: entry points
(training, benchmarks) call :func:`tune_cpu_allocator` once at start-up.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_ONE_GIB = 1 << 30


@functools.cache
def tune_cpu_allocator(threshold_bytes: int = _ONE_GIB) -> bool:
    """Serve blocks below ``threshold_bytes`` from the heap and never trim it eagerly.

    Returns True when the setting took effect (glibc), False where there is nothing to tune
    (another C library, or no ``mallopt``). Safe to call more than once.
    """
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    ok_mmap = mallopt(_M_MMAP_THRESHOLD, threshold_bytes) == 1
    ok_trim = mallopt(_M_TRIM_THRESHOLD, 2 * threshold_bytes - 1) == 1
    return ok_mmap and ok_trim
