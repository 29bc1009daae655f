"""Keep large XLA:CPU buffers on the heap instead of fresh ``mmap`` pages.

XLA on the CPU allocates its buffers with ``malloc``. glibc serves blocks above its mmap
threshold (at most 32 MiB by default) with a fresh ``mmap`` and unmaps them on free, so every
step of a training loop page-faults its large activations in again: on this project's
machines that alone made a 32 MiB elementwise op 5x slower than the memory copy it is
(``docs/performance.md``). Raising the mmap and trim thresholds keeps freed blocks in the
process for reuse, the way jemalloc or tcmalloc would. The threshold is the largest glibc
takes (just under 2 GiB): a step's temporary buffer is one block of all its intermediates
(789 MiB for the benchmark's LRU step, 1,517 MiB for the per-example form it is compared
with, which a 1 GiB threshold left to ``mmap``: 388,000 page faults and 0.84 s of kernel time
per step). Blocks above 2 GiB (long sequences at large batch) still get fresh pages; a
preloaded jemalloc or tcmalloc is the remedy there.

That alone is not enough: XLA allocates each execution's temporary buffer (all of a training
step's intermediates, 789 MiB for the benchmark's LRU step) from its client threads, and
glibc gives those threads their own arenas, whose heaps are capped at 64 MiB, so a larger
block falls back to ``mmap`` whatever the threshold says -- the step page-faulted 200,000
pages in again every time (0.37 s of kernel time per 0.93 s step). One arena for the whole
process (``M_ARENA_MAX = 1``) serves those blocks from the main heap too: 0.93 -> 0.76 s
per step, kernel time 0.37 -> 0.04 s. XLA allocates few, large blocks, so the single
arena's lock is not contended.

This is a process-wide setting, so the library never applies it on import: entry points
(training, benchmarks) call :func:`tune_cpu_allocator` once at start-up, before the first
JAX computation starts XLA's threads (a thread that already has an arena keeps it).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
#: The largest threshold mallopt takes (its argument is a C int): just under 2 GiB.
_MAX_THRESHOLD = (1 << 31) - 1


@functools.cache
def tune_cpu_allocator(threshold_bytes: int = _MAX_THRESHOLD) -> bool:
    """Serve blocks below ``threshold_bytes`` from the heap, from one arena, and never trim it
    eagerly.

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
    ok_trim = mallopt(_M_TRIM_THRESHOLD, _MAX_THRESHOLD) == 1
    ok_arena = mallopt(_M_ARENA_MAX, 1) == 1
    return ok_mmap and ok_trim and ok_arena
