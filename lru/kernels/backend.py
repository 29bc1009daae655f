"""Where the speed work of :mod:`lru.kernels` was measured to pay: a single CPU device.

Every fused operation, the compiled kernels' ``auto`` choices and the allocator settings
were measured on XLA:CPU with one device (``docs/performance.md``). On GPUs and TPUs none
has been measured against plain JAX, and on a multi-device mesh XLA's partitioner would
gather a custom call's operands onto every device; there the library runs plain JAX
(:mod:`lru.kernels.ops`) until a measurement there says otherwise.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import importlib.util
import os
import pkgutil

import jax

#: A forced choice of :func:`fused_pays` (tests and benchmarks compare both forms), or None.
_forced: list[bool] = []


def single_cpu_device() -> bool:
    """Whether JAX computes on the CPU with one device (initialises the backends)."""
    return jax.default_backend() == "cpu" and jax.device_count() == 1


def fused_pays() -> bool:
    """Whether :mod:`lru.kernels.ops` runs its fused forms: on a single CPU device, unless
    :func:`forms` forces a choice."""
    return _forced[-1] if _forced else single_cpu_device()


@contextlib.contextmanager
def forms(fused: bool):
    """Within the block, :mod:`lru.kernels.ops` runs its fused (True) or plain (False) forms
    whatever the backend. It acts at trace time, and JAX caches traces by function: trace a
    function object not yet traced outside the block (a fresh ``jax.jit`` or lambda). Used
    by the tests that compare the two forms."""
    _forced.append(bool(fused))
    try:
        yield
    finally:
        _forced.pop()


def cpu_expected() -> bool:
    """Before any backend exists: whether JAX will compute on the CPU.

    ``JAX_PLATFORMS`` (or ``jax.config.jax_platforms``) decides when set; otherwise JAX
    takes the first accelerator whose plugin is installed (a ``jax_plugins`` module or entry
    point, or ``libtpu``), and the CPU when there is none. Asking JAX itself would create
    its clients, after which :func:`lru.kernels.cpu_allocator.tune_cpu_allocator`'s
    dispatch setting can no longer take effect.
    """
    platforms = jax.config.jax_platforms or os.environ.get("JAX_PLATFORMS", "")
    if platforms:
        return platforms.split(",")[0].strip().lower() == "cpu"
    return not accelerator_plugins()


def accelerator_plugins() -> list[str]:
    """The names of installed JAX accelerator plugins (``jax_plugins.*`` modules, entry points
    of the ``jax_plugins`` group, ``libtpu``)."""
    found = []
    try:
        import jax_plugins  # namespace package of the CUDA/ROCm plugins

        found += [m.name for m in pkgutil.iter_modules(jax_plugins.__path__)]
    except ImportError:
        pass
    found += [e.name for e in importlib.metadata.entry_points(group="jax_plugins")]
    if importlib.util.find_spec("libtpu") is not None:
        found.append("libtpu")
    return sorted(set(found))
