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

The threshold alone does not reach that buffer: with JAX's asynchronous CPU dispatch, XLA
runs each execution, and allocates its temporary buffer, on a client thread, and glibc gives
such threads arenas whose heaps are capped at 64 MiB, so a larger block falls back to
``mmap`` whatever the threshold says: the benchmark's step page-faulted 200,000 pages in
again every time (0.37 s of kernel time per 0.93 s step). Dispatching CPU computations
inline (``jax_cpu_enable_async_dispatch=False``) runs them on the calling thread, whose
main arena holds the block: 0 faults, and the step 0.71 -> 0.66 s. (One malloc arena for
the whole process, ``M_ARENA_MAX=1``, also removes the faults but made every compilation
about 25% slower, its threads contending for the one lock; inline dispatch leaves the
arenas alone. The Python thread now waits for each computation, which the training loop
does anyway when it reads the step's metrics.)

Both are process-wide, so the library never applies them on import: entry points (training,
benchmarks) call :func:`tune_cpu_allocator` once at start-up, before the first JAX
computation (JAX reads the dispatch setting when it creates the CPU client).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools

import jax

from lru.kernels.backend import cpu_expected

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: The largest threshold mallopt takes (its argument is a C int): just under 2 GiB.
_MAX_THRESHOLD = (1 << 31) - 1


@functools.cache
def tune_cpu_allocator(threshold_bytes: int = _MAX_THRESHOLD) -> bool:
    """Serve blocks below ``threshold_bytes`` from the heap, never trim it eagerly, and run
    CPU computations on the calling thread (whose arena can hold a step's buffers).

    Applies only where JAX will compute on the CPU (:func:`lru.kernels.backend.cpu_expected`),
    where the settings were measured; on a GPU or TPU host it changes nothing.

    Returns True when the malloc settings took effect (glibc), False where there is nothing
    to tune (not a CPU run, another C library, or no ``mallopt``). Safe to call more than once.
    """
    if not cpu_expected():
        return False
    jax.config.update("jax_cpu_enable_async_dispatch", False)
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
    return ok_mmap and ok_trim
