"""lru.cpu_allocator: large blocks freed by a worker thread are reused, not faulted in again.

Each case runs in a fresh interpreter (the setting is process-wide and only binds threads
started after it): a new thread, as XLA's client threads are, allocates, touches and frees a
200 MiB block three times and reports the page faults of each touch.
"""

from __future__ import annotations

import ctypes.util
import json
import subprocess
import sys
import textwrap

import pytest

PROBE = textwrap.dedent("""
    import ctypes, ctypes.util, json, resource, sys, threading
    if sys.argv[1] == "tuned":
        from lru.cpu_allocator import tune_cpu_allocator
        assert tune_cpu_allocator()
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = (ctypes.c_size_t,)
    libc.free.argtypes = (ctypes.c_void_p,)
    libc.memset.argtypes = (ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t)
    SIZE = 200 << 20
    faults = []
    def work():
        for _ in range(3):
            p = libc.malloc(SIZE)
            f0 = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
            libc.memset(p, 1, SIZE)
            faults.append(resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - f0)
            libc.free(p)
    t = threading.Thread(target=work)
    t.start()
    t.join()
    print(json.dumps(faults))
""")


def _faults(mode: str) -> list[int]:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                         check=True, timeout=60)
    return json.loads(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux") or ctypes.util.find_library("c") is None,
                    reason="glibc's mallopt and RUSAGE_THREAD are Linux-only")
def test_thread_reuses_large_blocks_only_when_tuned():
    pages = (200 << 20) // 4096
    plain, tuned = _faults("plain"), _faults("tuned")
    # glibc as shipped: a thread's 200 MiB block is a fresh mmap each time (its arena's heaps
    # are capped at 64 MiB), so every touch faults (2 MiB pages under THP fault less).
    assert all(f >= pages // 512 for f in plain), plain
    # tuned: the first touch faults the heap in; the next two reuse it
    assert tuned[0] >= pages // 512 and tuned[1:] == [0, 0], tuned
