"""Shared test settings.

A persistent compilation cache shared by the session's workers and the processes the
tests start (``JAX_COMPILATION_CACHE_DIR``, inherited): the suite trains the same tiny
models many times (a fresh jitted step per ``train`` call, a fresh process per CLI test),
and XLA compiles each program once. Entries are keyed by the program, the compile options
and JAX's version, so a hit is the same executable.

``compile_fast``: for tests whose time goes to XLA compiling many small programs (every
experiment's two training steps, Griffin's eager decoding loops), XLA's LLVM optimisations
are turned off while they run (``jax_disable_most_optimizations``: LLVM level 0 and no
expensive passes; the HLO passes, hence fusion and memory plans, are unchanged). The
programs are the same computations, compiled in about two thirds of the time and run more
slowly, which only pays where running is a small part of the test.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

#: Set before JAX reads its configuration, here and in every process a test starts.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      str(Path(tempfile.gettempdir()) / "lru-harness-tests-jax-cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs",
                  float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))


@pytest.fixture
def compile_fast():
    before = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", before)
