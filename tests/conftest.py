"""Shared test settings.

``compile_fast``: for tests whose time goes to XLA compiling many small programs (every
experiment's two training steps, Griffin's eager decoding loops), XLA's LLVM optimisations
are turned off while they run (``jax_disable_most_optimizations``: LLVM level 0 and no
expensive passes; the HLO passes, hence fusion and memory plans, are unchanged). The
programs are the same computations, compiled in about two thirds of the time and run more
slowly, which only pays where running is a small part of the test.
"""

from __future__ import annotations

import jax
import pytest


@pytest.fixture
def compile_fast():
    before = jax.config.jax_disable_most_optimizations
    jax.config.update("jax_disable_most_optimizations", True)
    try:
        yield
    finally:
        jax.config.update("jax_disable_most_optimizations", before)
