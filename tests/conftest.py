"""Shared test settings.

A persistent compilation cache shared by the session's workers and the processes the
tests start (``JAX_COMPILATION_CACHE_DIR``, inherited): the suite trains the same tiny
models many times (a fresh jitted step per ``train`` call, a fresh process per CLI test),
and XLA compiles each program once. Entries are keyed by the program, the compile options
and JAX's version, so a hit is the same executable.

XLA's LLVM optimisations are off (``JAX_DISABLE_MOST_OPTIMIZATIONS``: LLVM level 0 and no
expensive passes; the HLO passes, hence fusion and memory plans, are unchanged), here and
in every process a test starts: the suite's time goes to compiling many small programs,
which this cuts by about a third, while its tiny programs run about as fast (measured on
the tiny job: 2 steps 11.2 -> 7.3 s, 200 steps 6.9 -> 4.5 s). Both paths a test compares
are compiled alike; speed is measured by ``bench/``, at full optimisation. On jaxlib
0.10, XLA's CPU backend also emits fusions with its older emitters
(``--xla_cpu_use_fusion_emitters=false``), which compile the training step of the tiny
job in 1.2 s instead of 2.8 s. Tests that start processes with their own ``XLA_FLAGS``
extend these (:func:`tests.spawn.xla_flags`).

``data_dir``: the tiny job's generated ListOps (:mod:`tests.tiny`), once per process.
"""

from __future__ import annotations

import os
import tempfile
from importlib.metadata import version
from pathlib import Path

#: Set before JAX reads its configuration, here and in every process a test starts.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      str(Path(tempfile.gettempdir()) / "lru-harness-tests-jax-cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
_EMITTERS = "--xla_cpu_use_fusion_emitters=false"
if version("jaxlib").startswith("0.10.") and _EMITTERS not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {_EMITTERS}".strip()

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_compilation_cache_dir", os.environ["JAX_COMPILATION_CACHE_DIR"])
jax.config.update("jax_persistent_cache_min_compile_time_secs",
                  float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))
jax.config.update("jax_disable_most_optimizations",
                  os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] not in ("", "0", "false"))


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """The tiny job's data (:mod:`tests.tiny`), generated once per test process."""
    from lru.training.loop import load_data
    from tests.tiny import compose_cfg, tiny_overrides

    root = tmp_path_factory.mktemp("listops-data")
    load_data(compose_cfg(tiny_overrides(root, root / "unused")))
    return root
