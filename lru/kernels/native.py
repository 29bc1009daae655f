"""Compiled CPU kernels (``lru/kernels/csrc/``) called through ``jax.ffi``: the build, the cache, the
registration, and a thin wrapper per kernel.

* ``scan_kernels.cc``: ``method="native"`` of :func:`lru.scan.planar_recurrence` (the LRU's
  and S5's complex time-invariant recurrence on ``[Re | Im]`` storage) and of
  :func:`lru.scan.linear_recurrence` for a real input-dependent ``a`` (the RG-LRU). XLA:CPU
  runs a ``while`` loop one thunk at a time, so the in-place loop of :mod:`lru.scan` pays a
  dispatch per block of steps and lets no row of the batch run ahead of another; the kernel
  walks each sequence over time in one pass over memory, its states in L1, the rows shared
  out over XLA's intra-op threads (``bench/scan.py``).
* ``gate_kernels.cc``: the full GLU's gate with the residual skip around it
  (:func:`lru.kernels.glu.residual_gated_linear_unit`), forward and backward each in one pass, where
  XLA:CPU made two and three passes of them (``docs/performance.md``).

The library is built on first use with the system's C++ compiler (``$CXX``, else ``c++``
or ``g++``) against the XLA FFI headers that jaxlib ships, into a cache directory
(``$LRU_NATIVE_CACHE``, default ``~/.cache/lru-harness/native``) under a name that hashes
the sources, the flags, the compiler, jaxlib's version and the CPU, and loaded with
``ctypes``. Where it cannot be built (no compiler, say), :func:`available` is False, the
``"auto"`` choices keep to XLA, and asking for a kernel explicitly raises an error that says
why. ``LRU_NATIVE=0`` turns them all off.

Shapes (axis legend: ``b`` batch, ``t`` time, ``n`` state, ``d`` width): planar ``a_re,
a_im: (n,)``, ``b, x, g: (b, t, 2n)`` holding ``[Re | Im]``; real input-dependent ``a, b, x,
g: (b, t, n)``, ``h0: (b, n)``; the gate's ``a: (..., 2d)``, ``bias: (2d,)``, ``u: (...,
d)``. float32 only.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import jaxlib

from lru.kernels.backend import single_cpu_device

Array = jax.Array

CSRC = Path(__file__).parent / "csrc"
#: Compiled together into one library; HEADERS only count for the cache key.
SOURCES = (CSRC / "scan_kernels.cc", CSRC / "gate_kernels.cc")
HEADERS = (CSRC / "parallel_rows.h",)
_FORWARD, _ADJOINT = "lru_planar_scan_forward", "lru_planar_scan_adjoint"
_DIAG_FORWARD, _DIAG_ADJOINT = "lru_diag_scan_forward", "lru_diag_scan_adjoint"
_GATE_FORWARD, _GATE_BACKWARD = "lru_glu_gate_forward", "lru_glu_gate_backward"
#: XLA target name -> the handler symbol the library exports for it.
_HANDLERS = {_FORWARD: "LruPlanarScanForward", _ADJOINT: "LruPlanarScanAdjoint",
             _DIAG_FORWARD: "LruDiagScanForward", _DIAG_ADJOINT: "LruDiagScanAdjoint",
             _GATE_FORWARD: "LruGluGateForward", _GATE_BACKWARD: "LruGluGateBackward"}
#: Compiler flags, most specific first: the second set is tried when the first fails.
FLAG_SETS = (["-O3", "-march=native"], ["-O3"])


class NativeUnavailable(RuntimeError):
    """The kernel could not be built or loaded here (the message says why)."""


def cache_dir() -> Path:
    return Path(os.environ.get("LRU_NATIVE_CACHE",
                               Path.home() / ".cache" / "lru-harness" / "native"))


def _compiler() -> str:
    for name in filter(None, (os.environ.get("CXX"), "c++", "g++", "clang++")):
        if shutil.which(name):
            return name
    raise NativeUnavailable("no C++ compiler found (tried $CXX, c++, g++, clang++); install "
                            "one (e.g. `apt install g++`) or set CXX")


def _cpu_signature() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor()
    return next((ln for ln in lines if ln.startswith(("flags", "Features"))), "")


def _build(cxx: str) -> Path:
    """Compile the kernels (or find them in the cache) and return the shared library's path."""
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    include = jax.ffi.include_dir()
    identity = [f.read_text() for f in SOURCES + HEADERS] + [
        version, jaxlib.__version__, platform.machine(), _cpu_signature()]
    errors = []
    for flags in FLAG_SETS:
        key = hashlib.sha256("\0".join(identity + [" ".join(flags)]).encode()).hexdigest()[:16]
        lib = cache_dir() / f"lru_kernels-{key}.so"
        if lib.exists():
            return lib
        lib.parent.mkdir(parents=True, exist_ok=True)
        # build beside the target, then rename: concurrent builders never see half a file
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=lib.parent)
        os.close(fd)
        cmd = [cxx, *flags, "-std=c++17", "-shared", "-fPIC", "-isystem", include,
               *map(str, SOURCES), "-o", tmp]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode == 0:
            os.replace(tmp, lib)
            return lib
        os.unlink(tmp)
        errors.append(f"$ {' '.join(cmd)}\n{done.stderr.strip()[-2000:]}")
    raise NativeUnavailable("compiling lru/kernels/csrc failed:\n" + "\n".join(errors))


#: The loaded library, once its handlers are registered: XLA keeps one handler per name
#: for the life of the process, so registration happens once.
_registered: list[ctypes.CDLL] = []


@functools.cache
def _load() -> str | None:
    """Build, load and register the kernels (once per process); the reason they are
    unavailable, or None when they are ready."""
    if os.environ.get("LRU_NATIVE", "1") == "0":
        return "turned off by LRU_NATIVE=0"
    if _registered:
        return None
    try:
        lib = ctypes.CDLL(str(_build(_compiler())))
        for target, symbol in _HANDLERS.items():
            jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(lib, symbol)),
                                        platform="cpu")
    except (NativeUnavailable, OSError, AttributeError) as e:
        return str(e)
    _registered.append(lib)
    return None


def available() -> bool:
    """Whether the kernels are built and registered (building them on the first call)."""
    return _load() is None


def unavailable_reason() -> str | None:
    """Why the kernels cannot run here (building them on the first call), or None."""
    return _load()


def runs_here() -> bool:
    """Whether ``"auto"`` choices take the kernels: on a single CPU device
    (:func:`lru.kernels.backend.single_cpu_device`; XLA's partitioner cannot split a custom
    call: on a mesh it would gather the whole batch onto every device for it), where the
    kernels are available."""
    return single_cpu_device() and available()


def require() -> None:
    """Raise :class:`NativeUnavailable`, saying why, unless the kernels are available."""
    reason = _load()
    if reason is not None:
        raise NativeUnavailable(f"the compiled CPU kernels (lru/kernels/native.py) are unavailable: "
                                f"{reason}. Use method='auto' or an XLA method instead.")


def planar_forward(a_re: Array, a_im: Array, b: Array, mask: Array, reverse: bool) -> Array:
    """``x_t = a x_prev(t) + mask_t b_t`` on ``[Re | Im]`` storage (``mask: (b, t)`` bool):
    ``(b, t, 2n) -> (b, t, 2n)``, written over ``b``'s buffer where XLA can.

    ``b`` crosses into the kernel as ``(b t, 2n)``: a ``B`` product's output has that shape,
    and XLA:CPU copies a reshaped operand before a handler may write over it (8 copies of a
    32 MiB array per LRU training step when the kernel took ``(b, t, 2n)``)."""
    require()
    flat = b.reshape(-1, b.shape[-1])
    call = jax.ffi.ffi_call(_FORWARD, jax.ShapeDtypeStruct(flat.shape, jnp.float32),
                            vmap_method="broadcast_all", input_output_aliases={2: 0})
    return call(a_re, a_im, flat, mask, reverse=bool(reverse)).reshape(b.shape)


def planar_adjoint(a_re: Array, a_im: Array, x: Array, g: Array, mask: Array,
                   reverse: bool) -> tuple[Array, Array, Array]:
    """The adjoint of :func:`planar_forward` at states ``x`` for cotangent ``g``: ``db = mask lam``
    (``(b, t, 2n)``, over ``g``'s buffer where XLA can; ``x`` and ``g`` cross as ``(b t,
    2n)`` as in :func:`planar_forward`) and ``d a_re, d a_im`` (``(n,)``, each row's share
    summed over the batch in float64)."""
    require()
    flat = g.reshape(-1, g.shape[-1])
    out = (jax.ShapeDtypeStruct(flat.shape, jnp.float32),
           jax.ShapeDtypeStruct(a_re.shape, jnp.float32),
           jax.ShapeDtypeStruct(a_im.shape, jnp.float32))
    call = jax.ffi.ffi_call(_ADJOINT, out, vmap_method="broadcast_all",
                            input_output_aliases={3: 0})
    db, da_re, da_im = call(a_re, a_im, x.reshape(flat.shape), flat, mask, reverse=bool(reverse))
    return db.reshape(g.shape), da_re, da_im


def diag_forward(a: Array, b: Array, h0: Array, reverse: bool) -> Array:
    """``x_t = a_t x_prev(t) + b_t`` for real input-dependent ``a``, starting from ``h0``,
    written over ``b``'s buffer where XLA can: ``(b, t, n) -> (b, t, n)``."""
    require()
    call = jax.ffi.ffi_call(_DIAG_FORWARD, jax.ShapeDtypeStruct(b.shape, jnp.float32),
                            vmap_method="broadcast_all", input_output_aliases={1: 0})
    return call(a, b, h0, reverse=bool(reverse))


def diag_adjoint(a: Array, x: Array, h0: Array, g: Array,
                 reverse: bool) -> tuple[Array, Array, Array]:
    """The adjoint of :func:`diag_forward` at states ``x`` for cotangent ``g``: ``db``
    (over ``g``'s buffer), ``da`` (over ``x``'s), both ``(b, t, n)``, and ``dh0`` ``(b, n)``."""
    require()
    out = (jax.ShapeDtypeStruct(g.shape, jnp.float32), jax.ShapeDtypeStruct(x.shape, jnp.float32),
           jax.ShapeDtypeStruct(h0.shape, jnp.float32))
    call = jax.ffi.ffi_call(_DIAG_ADJOINT, out, vmap_method="broadcast_all",
                            input_output_aliases={3: 0, 1: 1})
    return call(a, x, h0, g, reverse=bool(reverse))


def gate_forward(a: Array, bias: Array, u: Array) -> Array:
    """The full GLU's gate and skip: ``u + (a1 + b1) * sigmoid(a2 + b2)`` for ``a = [a1 |
    a2]: (..., 2d)``, ``bias = [b1 | b2]: (2d,)``, ``u: (..., d)`` -> ``(..., d)``."""
    require()
    call = jax.ffi.ffi_call(_GATE_FORWARD, jax.ShapeDtypeStruct(u.shape, jnp.float32),
                            vmap_method="sequential")
    return call(a, bias, u)


def gate_backward(a: Array, bias: Array, dout: Array) -> tuple[Array, Array]:
    """The gate's cotangents for ``dout: (..., d)``: ``da: (..., 2d)`` (also the bias's
    per-row cotangent) and ``dbias: (2d,)``, its sum over rows (chunks of rows summed in
    float64 in a fixed order)."""
    require()
    out = (jax.ShapeDtypeStruct(a.shape, jnp.float32),
           jax.ShapeDtypeStruct(bias.shape, jnp.float32))
    call = jax.ffi.ffi_call(_GATE_BACKWARD, out, vmap_method="sequential")
    return call(a, bias, dout)
